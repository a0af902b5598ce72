// src/wire.d.ts is what scripts/gen-types.mjs makes of the server's documents today: a change
// of the wire types without regenerating fails here.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';

import { generate } from '../scripts/gen-types.mjs';
import { NebulaServer } from './helpers.mjs';

let server;
before(async () => {
  server = await NebulaServer.create();
});
after(async () => {
  await server?.stop();
});

test('the generated wire types match the server’s OpenAPI and AsyncAPI documents', async () => {
  const openapi = await (await fetch(`${server.url}/openapi.json`)).json();
  const asyncapi = await (await fetch(`${server.url}/asyncapi.json`)).json();
  const committed = fs.readFileSync(new URL('../src/wire.d.ts', import.meta.url), 'utf8');
  assert.equal(generate(openapi, asyncapi), committed, 'run `npm run types -- <server url>`');
  for (const type of ['message.new', 'message.updated', 'message.ack', 'subscribed']) {
    assert.ok(committed.includes(`type: "${type}"`), type);
  }
});
