/// <reference types="node" />
// The core entry stays under 4 KB minified and gzipped (`npm run size`
// measures the same: esbuild --minify, gzip -9), and has no runtime
// dependency.
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

export const budget = 4096;

describe('size', () => {
  it(`the core entry is at most ${budget} bytes minified and gzipped, with nothing external`, async () => {
    const out = await build({
      entryPoints: [new URL('../src/index.ts', import.meta.url).pathname],
      bundle: true,
      minify: true,
      format: 'esm',
      target: 'es2022',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const bytes = gzipSync(out.outputFiles[0]!.contents, { level: 9 }).length;
    console.log(`core entry: ${bytes} bytes min+gzip (budget ${budget})`);
    expect(bytes).toBeLessThanOrEqual(budget);
    const inputs = Object.keys(out.metafile!.inputs);
    expect(inputs.filter((f) => !f.startsWith('src/'))).toEqual([]);
  });

  it('has no runtime dependencies', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(pkg.dependencies ?? {}).toEqual({});
  });
});
