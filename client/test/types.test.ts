/// <reference types="node" />
// The typing contract (generated Events plug in): test/types/good.ts must
// compile, and test/types/bad.ts must fail on exactly the lines marked
// `// error:` (a wrong field, a wrong event type, a wrong channel...).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'types');
const tsc = path.join(dir, '..', '..', 'node_modules', 'typescript', 'bin', 'tsc');

async function typecheck(name: string): Promise<string> {
  try {
    await run(process.execPath, [tsc, '-p', path.join(dir, `tsconfig.${name}.json`)]);
    return '';
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? err);
  }
}

describe('typed events', () => {
  it('good.ts compiles', async () => {
    expect(await typecheck('good')).toBe('');
  }, 120_000);

  it('bad.ts fails on each marked line, and only there', async () => {
    const out = await typecheck('bad');
    const failed = new Set([...out.matchAll(/bad\.ts\((\d+),\d+\): error/g)].map((m) => Number(m[1])));
    const marked = readFileSync(path.join(dir, 'bad.ts'), 'utf8')
      .split('\n')
      .flatMap((line, i) => (/^\s*[^/\s].*\/\/ error:/.test(line) ? [i + 1] : []));
    expect(marked.length).toBeGreaterThanOrEqual(5);
    expect([...failed].sort((a, b) => a - b)).toEqual(marked);
    expect(out).toMatch(/Property 'nope' does not exist/);
  }, 120_000);
});
