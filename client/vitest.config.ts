import { defineConfig } from 'vitest/config';

// Node 20 has a WebSocket global only behind --experimental-websocket (Node
// 22 has it by default): test/node.test.ts runs the client on it.
export default defineConfig({
  test: {
    execArgv: ['--experimental-websocket'],
  },
});
