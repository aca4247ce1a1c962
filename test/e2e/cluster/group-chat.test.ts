// Group chat from any node: a room's stanzas go to the one node that
// serves it (rendezvous hashing of the room's JID over the live nodes), so
// users logged in on different nodes are in the same room.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { xml, type TestClient, type XmlElement } from '../helpers/client.ts';
import { clusterSuite, natsReachable, NATS_UNREACHABLE, seen } from '../helpers/cluster.ts';
import { pgReachable, PG_UNREACHABLE } from '../postgres/db.ts';

const skip = !(await pgReachable()) ? PG_UNREACHABLE : !(await natsReachable()) ? NATS_UNREACHABLE : false;
const MUC = 'http://jabber.org/protocol/muc';
const MUC_USER = 'http://jabber.org/protocol/muc#user';
const SERVICE = 'conference.localhost';

function statusCodes(el: XmlElement): string[] {
  return (el.getChild('x', MUC_USER)?.getChildren('status') ?? []).map((s) => s.attrs.code as string);
}

async function join(c: TestClient, room: string, nick: string): Promise<XmlElement> {
  const full = `${room}@${SERVICE}/${nick}`;
  const done = c.waitFor((el) => el.name === 'presence' && el.attrs.from === full && (el.attrs.type === 'error' || statusCodes(el).includes('110')), 10_000, `join of ${full}`);
  await c.send(xml('presence', { to: full }, xml('x', { xmlns: MUC })));
  return done;
}

describe('group chat in a cluster of two nodes', { skip }, () => {
  const { login } = clusterSuite({ nodes: 2, extraToml: '[modules.mod_muc]\n  backend = "rdbms"\n' }, ['alice', 'bob']);

  test('users on different nodes join the same rooms and chat in them', async () => {
    const alice = await login(0, 'alice');
    const bob = await login(1, 'bob');
    await seen(alice, bob);
    // Several rooms, so that some are served by each node.
    for (const room of ['r1', 'r2', 'r3', 'r4']) {
      const own = await join(alice, room, 'Alice');
      assert.ok(statusCodes(own).includes('201'), `${room} is new`);
      const aliceSeesBob = alice.waitFor((el) => el.name === 'presence' && el.attrs.from === `${room}@${SERVICE}/Bob`);
      const self = await join(bob, room, 'Bob');
      assert.equal(self.attrs.type, undefined, `Bob joined ${room}`);
      assert.deepEqual(statusCodes(self), ['110'], `${room} existed already for Bob`);
      await aliceSeesBob;
      const toBoth = [alice, bob].map((c) => c.waitFor((el) => el.name === 'message' && el.getChildText('body') === `hello ${room}`));
      await bob.send(xml('message', { to: `${room}@${SERVICE}`, type: 'groupchat' }, xml('body', {}, `hello ${room}`)));
      for (const m of await Promise.all(toBoth)) assert.equal(m.attrs.from, `${room}@${SERVICE}/Bob`);
    }
    const left = alice.waitFor((el) => el.name === 'presence' && el.attrs.from === `r1@${SERVICE}/Bob` && el.attrs.type === 'unavailable');
    await bob.close();
    await left;
  });
});
