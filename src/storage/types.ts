// Storage interfaces. Every store is asynchronous so that the embedded SQLite
// store and a networked one (PostgreSQL) share one contract.

import type { StoredCredentials } from '../xmpp/sasl/types.ts';

/** The credentials are defined by the SASL layer that checks them. */
export type { ScramCredentials, StoredCredentials } from '../xmpp/sasl/types.ts';

export interface UserStore {
  /** False when the user already exists. */
  createUser(user: string, domain: string, creds: StoredCredentials): Promise<boolean>;
  /** False when there was no such user. Removes the user's roster and offline messages too. */
  removeUser(user: string, domain: string): Promise<boolean>;
  getCredentials(user: string, domain: string): Promise<StoredCredentials | null>;
  userExists(user: string, domain: string): Promise<boolean>;
  countUsers(domain: string): Promise<number>;
}

export type Subscription = 'none' | 'to' | 'from' | 'both' | 'remove';
/** RFC 6121 pending states kept beside the subscription. */
export type Ask = 'subscribe' | null;

export interface RosterItem {
  /** Bare JID of the contact. */
  jid: string;
  name: string | null;
  subscription: Exclude<Subscription, 'remove'>;
  ask: Ask;
  /** The contact asked to subscribe to us and we have not answered (RFC 6121 §3.1.3 "pending in"). */
  pendingIn: boolean;
  groups: string[];
}

export interface RosterStore {
  getRoster(user: string, domain: string): Promise<RosterItem[]>;
  getItem(user: string, domain: string, contact: string): Promise<RosterItem | null>;
  setItem(user: string, domain: string, item: RosterItem): Promise<void>;
  removeItem(user: string, domain: string, contact: string): Promise<void>;
}

export interface OfflineMessage {
  /** Serialised stanza. */
  xml: string;
  from: string;
  /** Milliseconds since the epoch when the server stored it. */
  timestamp: number;
}

export interface OfflineStore {
  store(user: string, domain: string, msg: OfflineMessage): Promise<void>;
  count(user: string, domain: string): Promise<number>;
  /** Returns and deletes every stored message, oldest first. */
  popAll(user: string, domain: string): Promise<OfflineMessage[]>;
}

export interface Storage {
  users: UserStore;
  roster: RosterStore;
  offline: OfflineStore;
  /** Flushes pending writes and closes the store. */
  close(): Promise<void>;
}
