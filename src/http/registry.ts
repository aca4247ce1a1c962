// The registry of HTTP handler kinds. The definitions are passed in by the
// wiring (src/http-handlers.ts), so this layer imports none of the layers
// whose handlers it serves (metrics/, modules/, ...).
import type { HttpHandlerDefinition, HttpHandlerRegistry } from './types.ts';

/** MongooseIM's handler names are Erlang module names: lower case, digits and "_". */
const HANDLER_NAME = /^[a-z][a-z0-9_]*$/;

/** A frozen registry of `definitions`, keyed by the name a [[listen.http.handlers.<name>]] table uses. */
export function httpHandlerRegistry<Ctx>(definitions: Record<string, HttpHandlerDefinition<Ctx, any>>): HttpHandlerRegistry<Ctx> {
  const out: Record<string, HttpHandlerDefinition<Ctx, any>> = {};
  for (const [name, def] of Object.entries(definitions)) {
    if (!HANDLER_NAME.test(name)) throw new Error(`HTTP handler name ${JSON.stringify(name)} is not a MongooseIM module name`);
    if (def.configSpec.kind !== 'section') throw new Error(`HTTP handler ${name}: its configSpec must be a section`);
    out[name] = Object.freeze({ ...def });
  }
  return Object.freeze(out);
}
