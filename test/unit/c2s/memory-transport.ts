// A transport whose other end is this process: what the session writes is
// read by the test as a client would read it, and what the test sends
// arrives as input. It is a real implementation of the Transport interface
// (write completion in order, buffered output, paused reading, end and
// destroy), with the socket replaced by two strings, so the session runs
// unchanged over it with the byte-stream framing.
import type { Transport, TransportEvents } from '../../../src/c2s/transport.ts';

export class MemoryTransport implements Transport {
  #events: TransportEvents | null = null;
  /** Writes the client has not read yet, oldest first. */
  #unread: string[] = [];
  #buffered = 0;
  /** Input sent while the server does not read. */
  #inbox: Uint8Array[] = [];
  #paused = false;
  #closed = false;
  #ended = false;
  #cursor = 0;
  #waiters: Array<() => void> = [];
  /** Everything the client has read so far. */
  received = '';
  /** The client reads whatever arrives; when false, only when `read()` is called. */
  reading: boolean;
  readonly secure: boolean;
  readonly remoteAddress: string | undefined;
  readonly closedPromise: Promise<void>;
  #resolveClosed!: () => void;

  constructor(o: { reading?: boolean; secure?: boolean; address?: string } = {}) {
    this.reading = o.reading ?? true;
    this.secure = o.secure ?? false;
    this.remoteAddress = o.address ?? '192.0.2.1';
    this.closedPromise = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  // --- the server's side (Transport) ---------------------------------------

  attach(events: TransportEvents): void {
    this.#events = events;
  }

  write(data: string): void {
    if (this.#closed) return;
    this.#unread.push(data);
    this.#buffered += data.length;
    if (this.reading) setImmediate(() => this.read());
  }

  get buffered(): number {
    return this.#buffered;
  }

  pause(): void {
    this.#paused = true;
  }

  /** As a socket does, input read meanwhile comes later, never from inside resume() itself. */
  resume(): void {
    this.#paused = false;
    setImmediate(() => {
      while (!this.#paused && !this.#closed && this.#inbox.length > 0) this.#events?.onData(this.#inbox.shift()!);
    });
  }

  get remote(): string {
    return `${this.remoteAddress}:5222`;
  }

  /** Once the client has read what is pending, the connection closes (as TCP's FIN, answered). */
  end(): void {
    if (this.#closed || this.#ended) return;
    this.#ended = true;
    setImmediate(() => {
      this.read();
      this.#close();
    });
  }

  destroy(): void {
    this.#unread = [];
    this.#buffered = 0;
    this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    setImmediate(() => {
      this.#events?.onClose();
      this.#resolveClosed();
      this.#wake();
    });
  }

  // --- the client's side ---------------------------------------------------

  get closed(): boolean {
    return this.#closed;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Sends text to the server, as one read on its side. */
  send(text: string): void {
    if (this.#closed || this.#ended) return;
    this.#deliver(Buffer.from(text));
  }

  /** The client ends its side of the connection. */
  sendEnd(): void {
    if (!this.#closed) this.#events?.onEnd();
  }

  #deliver(chunk: Uint8Array): void {
    if (this.#paused || this.#inbox.length > 0) this.#inbox.push(chunk);
    else this.#events?.onData(chunk);
  }

  /** Reads everything the server has written; each write is then reported taken. */
  read(): void {
    const unread = this.#unread;
    if (unread.length === 0) return;
    this.#unread = [];
    for (const w of unread) {
      this.received += w;
      this.#buffered -= w.length;
      this.#events?.onWritten();
    }
    this.#wake();
  }

  #wake(): void {
    for (const w of this.#waiters.slice()) w();
  }

  /** Waits until `pattern` appears in what was read after the previous match; the text up to the end of the match. */
  waitFor(pattern: string | RegExp, timeoutMs = 5000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const rest = this.received.slice(this.#cursor);
        let end = -1;
        if (typeof pattern === 'string') {
          const i = rest.indexOf(pattern);
          if (i >= 0) end = i + pattern.length;
        } else {
          const m = pattern.exec(rest);
          if (m !== null) end = m.index + m[0].length;
        }
        if (end < 0) return false;
        this.#cursor += end;
        resolve(rest.slice(0, end));
        return true;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${String(pattern)} within ${timeoutMs} ms; received:\n${this.received}`));
      }, timeoutMs);
      const waiter = () => {
        if (check()) done();
        else if (this.#closed) {
          done();
          reject(new Error(`closed before ${String(pattern)}; received:\n${this.received}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
      };
      this.#waiters.push(waiter);
    });
  }
}
