// A server that dies holding claims: opens the outbox described on stdin,
// appends the given rows already claimed, prints their ids as one JSON line
// and waits to be killed (the contract suite SIGKILLs it).
import { openSpec, type ContractRow, type OwnerSpec } from './stores.ts';

let input = '';
for await (const chunk of process.stdin) input += String(chunk);
const { spec, rows } = JSON.parse(input) as { spec: OwnerSpec; rows: Array<Omit<ContractRow, 'payload'> & { payload: string }> };
const store = await openSpec(spec);
const ids = await Promise.all(rows.map((r) => store.append({ ...r, payload: Buffer.from(r.payload, 'base64'), claimed: true })));
process.stdout.write(JSON.stringify(ids) + '\n');
// Kept alive until killed: the claims stay those of a live owner meanwhile.
setInterval(() => {}, 60_000);
