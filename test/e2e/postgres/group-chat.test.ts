// Group chat rooms kept in PostgreSQL: a persistent XEP-0045 room and a MUC
// Light room with members survive a restart, read back from the modules'
// own tables.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, xml } from '../helpers/client.ts';
import { restart } from '../delivery/helpers.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from './db.ts';

const reachable = await pgReachable();
const MUC = 'http://jabber.org/protocol/muc';
const L = 'urn:xmpp:muclight:0';

describe('group chat rooms in PostgreSQL', { skip: reachable ? false : PG_UNREACHABLE }, () => {
  let db: TestDatabase;
  let server: Petrel;

  before(async () => {
    db = await createTestDatabase();
    server = await startPetrel({
      users: [['alice', 'pw'], ['bob', 'pw']],
      extraToml: `${db.toml}\n[modules.mod_muc]\n  backend = "rdbms"\n[modules.mod_muc_light]\n  backend = "rdbms"\n`,
    });
  });

  after(async () => {
    await server?.dispose();
    await db?.drop();
  });

  test('a persistent room and a MUC Light room come back after a restart', async () => {
    const alice = await connect(server, 'alice', 'pw');
    const joined = alice.waitFor((el) => el.name === 'message' && el.getChild('subject') !== undefined);
    await alice.send(xml('presence', { to: 'pgroom@conference.localhost/A' }, xml('x', { xmlns: MUC })));
    await joined;
    await alice.iq(xml('iq', { type: 'set', to: 'pgroom@conference.localhost' }, xml('query', { xmlns: `${MUC}#owner` },
      xml('x', { xmlns: 'jabber:x:data', type: 'submit' },
        xml('field', { var: 'muc#roomconfig_persistentroom' }, xml('value', {}, '1')),
        xml('field', { var: 'muc#roomconfig_roomname' }, xml('value', {}, 'In PostgreSQL'))))));
    await alice.iq(xml('iq', { type: 'set', to: 'pglight@muclight.localhost' }, xml('query', { xmlns: `${L}#create` },
      xml('configuration', {}, xml('roomname', {}, 'Light in PostgreSQL')),
      xml('occupants', {}, xml('user', { affiliation: 'member' }, 'bob@localhost')))));
    await alice.close();
    assert.equal((await server.stop()).code, 0);
    const rooms = await db.query<{ name: string }>('SELECT name FROM petrel_muc_rooms');
    assert.deepEqual(rooms.map((r) => r.name), ['pgroom']);
    const light = await db.query<{ name: string }>('SELECT name FROM petrel_muc_light_rooms');
    assert.deepEqual(light.map((r) => r.name), ['pglight']);

    await restart(server);
    const bob = await connect(server, 'bob', 'pw');
    try {
      const info = (await bob.iq(xml('iq', { type: 'get', to: 'pgroom@conference.localhost' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })))).getChild('query')!;
      assert.equal(info.getChild('identity')!.attrs.name, 'In PostgreSQL');
      const l = (await bob.iq(xml('iq', { type: 'get', to: 'pglight@muclight.localhost' }, xml('query', { xmlns: `${L}#info` })))).getChild('query')!;
      assert.equal(l.getChild('configuration')!.getChildText('roomname'), 'Light in PostgreSQL');
      assert.deepEqual(l.getChild('occupants')!.getChildren('user').map((u) => [u.attrs.affiliation, u.text()]).sort(), [['member', 'bob@localhost'], ['owner', 'alice@localhost']]);
    } finally {
      await bob.close();
    }
  });
});
