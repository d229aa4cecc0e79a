// A bot process: `count` read-modify-write increments of `key` through updateWith.
import { Client } from "../../dist/index.js";

const [socketPath, key, count] = process.argv.slice(2);
const client = new Client(socketPath);
let conflicts = 0;
for (let i = 0; i < Number(count); i += 1) {
  await client.updateWith(key, (s) => {
    conflicts += 1;
    return { n: (s.data.n ?? 0) + 1 };
  });
}
await client.close();
process.stdout.write(JSON.stringify({ calls: conflicts }) + "\n");
