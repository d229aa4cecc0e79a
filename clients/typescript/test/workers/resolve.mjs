// A bot process: resolve one message at a given wall-clock time, print the session.
import { Client } from "../../dist/index.js";

const [socketPath, ctxJson, startAt] = process.argv.slice(2);
const client = new Client(socketPath);
await client.hello(); // connected before the race starts
const wait = Number(startAt) - Date.now();
if (wait > 0) await new Promise((r) => setTimeout(r, wait));
const resolution = await client.resolve(JSON.parse(ctxJson));
await client.close();
process.stdout.write(JSON.stringify({ key: resolution.sessionKey, id: resolution.sessionId, isNew: resolution.isNew }) + "\n");
