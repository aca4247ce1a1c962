// The part of @xmpp/client 0.14 (plain JavaScript, no types of its own) that
// the end-to-end tests use.
declare module '@xmpp/client' {
  export interface XmlElement {
    name: string;
    attrs: Record<string, string | undefined>;
    children: Array<XmlElement | string>;
    getChild(name: string, xmlns?: string): XmlElement | undefined;
    getChildren(name: string, xmlns?: string): XmlElement[];
    getChildElements(): XmlElement[];
    getChildText(name: string, xmlns?: string): string | null;
    getNS(): string;
    is(name: string, xmlns?: string): boolean;
    text(): string;
    toString(): string;
  }

  export type XmlChild = XmlElement | string | null | undefined | false;

  export function xml(name: string, attrs?: Record<string, string | undefined> | null, ...children: Array<XmlChild | XmlChild[]>): XmlElement;

  export interface Jid {
    local: string;
    domain: string;
    resource: string;
    toString(): string;
  }

  /** A mechanism object as the saslmechanisms factory creates it. */
  export interface SaslMechanism {
    name: string;
    clientFirst: boolean;
    response(credentials: { username: string; password: string }): string | Promise<string>;
    challenge(data: string): unknown;
  }

  export type Authenticate = (credentials: { username: string; password: string }, mechanism: string) => Promise<void>;

  export interface ClientOptions {
    service: string;
    domain: string;
    resource?: string;
    username?: string;
    password?: string;
    credentials?: (authenticate: Authenticate, mechanisms: string[]) => Promise<void>;
    timeout?: number;
  }

  /** Errors the library raises carry the XMPP condition (stream, SASL or stanza error). */
  export interface XmppError extends Error {
    condition?: string;
    element?: XmlElement;
  }

  export interface Client {
    status: string;
    jid: Jid | null;
    start(): Promise<Jid>;
    stop(): Promise<unknown>;
    send(element: XmlElement): Promise<void>;
    write(data: string): Promise<void>;
    on(event: 'stanza' | 'nonza' | 'element', fn: (el: XmlElement) => void): this;
    on(event: 'error', fn: (err: XmppError) => void): this;
    on(event: string, fn: (...args: any[]) => void): this;
    once(event: string, fn: (...args: any[]) => void): this;
    removeListener(event: string, fn: (...args: any[]) => void): this;
    isSecure(): boolean;
    iqCaller: {
      request(element: XmlElement, timeout?: number): Promise<XmlElement>;
    };
    reconnect: { stop(): void };
    saslFactory: { use(name: string, mechanism: new () => SaslMechanism): unknown };
  }

  export function client(options: ClientOptions): Client;
}
