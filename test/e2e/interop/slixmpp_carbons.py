"""A slixmpp client for Petrel's interoperability tests.

Logs in as argv[1] (JID with resource) with argv[2] as password on
127.0.0.1:argv[3], over plain text, with stream management (XEP-0198) and
message carbons (XEP-0280). It prints one line per step, which the test reads:
  SM_ENABLED            the server answered <enable/>
  CARBONS_ENABLED       the carbons IQ succeeded (CARBONS_FAILED <error> if not)
  READY                 presence sent, carbons on: the test may send
  CARBON_SENT <body>    a <sent/> carbon arrived; the client then disconnects
"""
import asyncio
import sys

import slixmpp


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.register_plugin('xep_0030')
        self.register_plugin('xep_0280')
        self.register_plugin('xep_0198')
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('sm_enabled', lambda _ev: say('SM_ENABLED'))
        self.add_event_handler('carbon_sent', self.carbon_sent)

    async def start(self, _event):
        self.send_presence()
        try:
            await self.plugin['xep_0280'].enable(timeout=10)
            say('CARBONS_ENABLED')
        except Exception as err:  # the test shows what failed
            say('CARBONS_FAILED ' + repr(err))
            self.disconnect()
            return
        say('READY')

    def carbon_sent(self, msg):
        say('CARBON_SENT ' + msg['carbon_sent']['body'])
        self.disconnect()


def say(line):
    print(line, flush=True)


def main():
    jid, password, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    xmpp = Client(jid, password)
    # Loopback tests over plain text.
    xmpp['feature_mechanisms'].unencrypted_plain = True
    xmpp.enable_starttls = False
    xmpp.connect(('127.0.0.1', port))
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 30))


if __name__ == '__main__':
    main()
