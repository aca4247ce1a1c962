// XEP-0199 XMPP Ping: the server answers a ping addressed to it with an empty
// result (§4.2 "Client-to-Server Pings"). Server-initiated pings to clients
// (MongooseIM's send_pings and friends) are not offered, so those keys are
// rejected as unknown options.
import { section } from '../config/schema.ts';
import { StanzaError } from '../xmpp/errors.ts';
import { NS_PING } from '../xmpp/ns.ts';
import type { ModuleDefinition, ModuleInstance } from './types.ts';

export type PingOpts = Record<string, never>;

export const definition: ModuleDefinition<PingOpts> = {
  name: 'mod_ping',
  configSpec: section({}, { default: true }),
  create(ctx): ModuleInstance {
    // XEP-0199 §8: a supporting entity advertises the feature in disco#info.
    ctx.features.add(NS_PING);
    return {
      iqHandlers: () => [
        {
          xmlns: NS_PING,
          scope: 'server',
          // §4.2: the answer is an IQ result with no payload. A ping is
          // only ever a "get"; anything else does not fit the protocol.
          handler: (req) => {
            if (req.type !== 'get') throw new StanzaError('bad-request', 'modify');
            return undefined;
          },
        },
      ],
    };
  },
};
