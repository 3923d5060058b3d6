/// <reference types="node" />
// The package as an app installs it (issue 14, item 1): `npm pack` (which
// builds dist/ through `prepare`), the tarball installed offline into a
// scratch project, then imported from Node (with browser globals that throw
// when touched: SSR), bundled with esbuild, and type-checked by tsc as a
// TypeScript app would; and a path install of the built directory.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const client = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name: string) => path.join(client, 'node_modules', '.bin', name);
const npmQuiet = ['--offline', '--no-audit', '--no-fund', '--loglevel=error'];

let tmp: string;
let app: string;

function project(dir: string): void {
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'scratch-app', version: '1.0.0', private: true, type: 'module' }));
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'cdc-client-pack-'));
  await run('npm', ['pack', '--pack-destination', tmp, '--loglevel=error'], { cwd: client });
  const tgz = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
  if (!tgz) throw new Error(`npm pack wrote no tarball in ${tmp}`);
  app = path.join(tmp, 'app');
  await run('mkdir', [app]);
  project(app);
  await run('npm', ['install', ...npmQuiet, path.join(tmp, tgz)], { cwd: app });
}, 300_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('holds dist/ and no sources or tests', async () => {
    const { stdout } = await run('tar', ['-tzf', path.join(tmp, readdirSync(tmp).find((f) => f.endsWith('.tgz'))!)]);
    const files = stdout.trim().split('\n').sort();
    expect(files).toEqual(expect.arrayContaining(['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/react.js', 'package/dist/react.d.ts', 'package/package.json']));
    expect(files.filter((f) => !f.startsWith('package/dist/') && !['package/package.json', 'package/README.md'].includes(f))).toEqual([]);
  });

  it('imports from Node without touching browser globals (SSR), and resolves the react entry', async () => {
    const script = `
      for (const name of ['window', 'document', 'location', 'navigator', 'sessionStorage', 'localStorage']) {
        Object.defineProperty(globalThis, name, { configurable: true, get() { throw new Error('touched ' + name + ' at import'); } });
      }
      const m = await import('cdc-broadcaster-client');
      const names = ['createRealtime', 'getRealtime', 'RealtimeClient', 'invalidateOn', 'Backoff', 'Dedup', 'subprotocol'];
      const missing = names.filter((n) => !(n in m));
      if (missing.length) throw new Error('missing exports: ' + missing);
      console.log(import.meta.resolve('cdc-broadcaster-client/react'));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: app });
    expect(stdout.trim()).toMatch(/node_modules\/cdc-broadcaster-client\/dist\/react\.js$/);
  }, 60_000);

  it('bundles with esbuild, and the bundle runs', async () => {
    writeFileSync(path.join(app, 'entry.js'), `import { createRealtime, Backoff } from 'cdc-broadcaster-client';
console.log(typeof createRealtime, new Backoff().ceiling(1));
`);
    await run(bin('esbuild'), ['entry.js', '--bundle', '--format=esm', '--platform=browser', '--outfile=out.js', '--log-level=warning'], { cwd: app });
    const { stdout } = await run(process.execPath, ['out.js'], { cwd: app });
    expect(stdout.trim()).toBe('function 1000');
  }, 60_000);

  it('type-checks in a TypeScript app (moduleResolution NodeNext and Bundler)', async () => {
    writeFileSync(path.join(app, 'app.ts'), `import { createRealtime } from 'cdc-broadcaster-client';
import type { Subscription } from 'cdc-broadcaster-client';
import type { useRealtime } from 'cdc-broadcaster-client/react';
interface Events { 'exam.submitted': { operation: 'INSERT' | 'UPDATE'; data: { id: number; score: number | null } } }
const rt = createRealtime<Events>({ url: 'ws://x/ws', getToken: () => 't', WebSocket: undefined, fetch: undefined });
const sub: Subscription<Events> = rt.subscribe(['exam:7']);
sub.on('exam.submitted', (e) => e.data.score);
export type Hook = typeof useRealtime;
`);
    for (const resolution of ['NodeNext', 'Bundler']) {
      const mod = resolution === 'NodeNext' ? 'NodeNext' : 'ESNext';
      await run(bin('tsc'), ['--noEmit', '--strict', '--skipLibCheck', '--target', 'ES2022', '--lib', 'ES2022,DOM', '--module', mod, '--moduleResolution', resolution, 'app.ts'], { cwd: app }).catch((err) => {
        throw new Error(`tsc (${resolution}): ${err.stdout}${err.stderr}`);
      });
    }
  }, 120_000);
});

describe('a path install', () => {
  it('of the built client/ directory imports from Node', async () => {
    const dir = path.join(tmp, 'by-path');
    await run('mkdir', [dir]);
    project(dir);
    // dist/ is there (npm pack built it); --ignore-scripts: no second build.
    await run('npm', ['install', ...npmQuiet, '--ignore-scripts', client], { cwd: dir });
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', "const m = await import('cdc-broadcaster-client'); console.log(typeof m.createRealtime)"], { cwd: dir });
    expect(stdout.trim()).toBe('function');
  }, 120_000);
});
