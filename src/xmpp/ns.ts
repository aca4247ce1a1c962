// XML namespaces used by the server, each beside the specification defining it.

// RFC 6120 (XMPP Core)
export const NS_CLIENT = 'jabber:client';
export const NS_SERVER = 'jabber:server';
export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_STREAMS_ERR = 'urn:ietf:params:xml:ns:xmpp-streams';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
export const NS_XML = 'http://www.w3.org/XML/1998/namespace';

// RFC 3921 §3 session establishment, kept as an optional no-op feature (RFC 6121 Appendix E)
export const NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session';

// RFC 7395 (XMPP over WebSocket)
export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

// RFC 6121 (XMPP IM): roster and roster versioning (§2.6)
export const NS_ROSTER = 'jabber:iq:roster';
export const NS_ROSTER_VER = 'urn:xmpp:features:rosterver';

// XEP-0030 Service Discovery
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

// XEP-0199 XMPP Ping
export const NS_PING = 'urn:xmpp:ping';
// XEP-0203 Delayed Delivery
export const NS_DELAY = 'urn:xmpp:delay';
// XEP-0160 offline messages: the disco feature a server with offline storage announces
export const NS_MSGOFFLINE = 'msgoffline';
// XEP-0013 Flexible Offline Message Retrieval
export const NS_OFFLINE = 'http://jabber.org/protocol/offline';
// XEP-0092 Software Version
export const NS_VERSION = 'jabber:iq:version';
// XEP-0012 Last Activity
export const NS_LAST = 'jabber:iq:last';
// XEP-0202 Entity Time
export const NS_TIME = 'urn:xmpp:time';
// XEP-0077 In-Band Registration
export const NS_REGISTER = 'jabber:iq:register';
export const NS_REGISTER_FEATURE = 'http://jabber.org/features/iq-register';
// XEP-0054 vcard-temp
export const NS_VCARD = 'vcard-temp';
// XEP-0049 Private XML Storage
export const NS_PRIVATE = 'jabber:iq:private';
// XEP-0004 Data Forms
export const NS_XDATA = 'jabber:x:data';
// XEP-0115 Entity Capabilities
export const NS_CAPS = 'http://jabber.org/protocol/caps';
// XEP-0085 Chat State Notifications
export const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
// XEP-0184 Message Delivery Receipts
export const NS_RECEIPTS = 'urn:xmpp:receipts';
// XEP-0280 Message Carbons
export const NS_CARBONS = 'urn:xmpp:carbons:2';
// XEP-0297 Stanza Forwarding
export const NS_FORWARD = 'urn:xmpp:forward:0';
// XEP-0359 Unique and Stable Stanza IDs
export const NS_STANZA_ID = 'urn:xmpp:sid:0';
// XEP-0334 Message Processing Hints
export const NS_HINTS = 'urn:xmpp:hints';
// XEP-0308 Last Message Correction
export const NS_CORRECTION = 'urn:xmpp:message-correct:0';
// XEP-0198 Stream Management
export const NS_SM = 'urn:xmpp:sm:3';
// XEP-0352 Client State Indication
export const NS_CSI = 'urn:xmpp:csi:0';
// XEP-0191 Blocking Command
export const NS_BLOCKING = 'urn:xmpp:blocking';
// XEP-0313 Message Archive Management
export const NS_MAM = 'urn:xmpp:mam:2';
// XEP-0357 Push Notifications
export const NS_PUSH = 'urn:xmpp:push:0';
// XEP-0045 Multi-User Chat
export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
