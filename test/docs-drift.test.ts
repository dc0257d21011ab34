import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configSchema, s3DestinationSchema } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import { renderReferenceDocs } from '../scripts/gen-docs.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

describe('generated references (docs/reference)', () => {
  const rendered = renderReferenceDocs();

  it.each([...rendered.keys()])('%s is what the code says now', (file) => {
    const committed = existsSync(path.join(root, file)) ? read(file) : '';
    if (committed !== rendered.get(file)) {
      expect.fail(
        `${file} differs from what scripts/gen-docs.ts renders from the code: run \`npm run docs:gen\` and commit it`,
      );
    }
  });

  it('has a description for every configuration key', () => {
    for (const [key, schema] of Object.entries({
      ...configSchema.shape,
      ...Object.fromEntries(
        Object.entries(s3DestinationSchema.shape).map(([key, value]) => [
          `S3_<NAME>_${key}`,
          value,
        ]),
      ),
    })) {
      expect(schema.description, key).toMatch(/\S/);
    }
  });
});

/** Source files of the apps, the packages and the scripts, without their tests. */
function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== 'dist')
        files.push(...sourceFiles(relative));
    } else if (/\.(ts|mjs)$/.test(entry.name) && !/\.test\.ts$/.test(entry.name)) {
      files.push(relative);
    }
  }
  return files;
}

// Read from the environment, but not settings of pgkeep: the search path of child processes,
// and a switch of the AWS SDK that pgkeep sets itself.
const notSettings = new Set(['PATH', 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED']);

describe('environment keys', () => {
  it('every key the code reads from the environment is in the configuration reference', () => {
    const reference = read('docs/reference/configuration.md');
    const documented = new Set(
      [...reference.matchAll(/^\| `([A-Z][A-Z0-9_<>]*)`\s+\|/gm)].map((match) => match[1]),
    );
    const files = ['apps', 'packages', 'scripts'].flatMap((dir) =>
      ['apps', 'packages'].includes(dir)
        ? readdirSync(path.join(root, dir)).map((name) => path.join(dir, name, 'src'))
        : [dir],
    );
    const readKeys = new Map<string, string>();
    for (const file of files.flatMap(sourceFiles)) {
      const text = read(file);
      // process.env.KEY, process.env['KEY'], and the CLI's setting('KEY') over process.env.
      for (const match of text.matchAll(
        /process\.env(?:\.([A-Z][A-Z0-9_]*)|\[['"]([A-Z][A-Z0-9_]*)['"]\])|\bsetting\(['"]([A-Z][A-Z0-9_]*)['"]\)/g,
      )) {
        const key = match[1] ?? match[2] ?? match[3];
        if (key && !notSettings.has(key)) readKeys.set(key, file);
      }
    }
    // The generator reads the schema, so its keys are there by construction; this catches keys
    // read beside it (the CLIs).
    expect(readKeys.size).toBeGreaterThan(0);
    const missing = [...readKeys].filter(([key]) => !documented.has(key));
    expect(
      missing.map(([key, file]) => `${key} (read in ${file})`),
      'keys missing from docs/reference/configuration.md: add them to the schema in @pgkeep/core and run `npm run docs:gen`',
    ).toEqual([]);
  });
});

describe('.env.example', () => {
  it('lists every configuration key (S3 keys for the example destination OFFSITE)', () => {
    const example = read('.env.example');
    const keys = [
      ...Object.keys(configSchema.shape),
      ...Object.keys(s3DestinationSchema.shape).map((key) => `S3_OFFSITE_${key}`),
    ];
    // A key's line, set or commented out: `KEY=` or `# KEY=`.
    const missing = keys.filter((key) => !new RegExp(`^(# )?${key}=`, 'm').test(example));
    expect(missing, 'keys missing from .env.example (every key, with its default)').toEqual([]);
  });
});

describe('docs/configuration.md', () => {
  it('places every configuration key under a subject of its map', () => {
    const page = read('docs/configuration.md');
    const map = page.slice(
      page.indexOf('## The settings by subject'),
      page.indexOf('## With Docker'),
    );
    // Each `KEY` or `PATTERN_*` in the map's rows, as a regular expression.
    const patterns = [...map.matchAll(/`([A-Z][A-Z0-9_<>*]*)`/g)].map(
      (match) => new RegExp(`^${(match[1] ?? '').replaceAll('*', '[A-Z0-9_]*')}$`),
    );
    expect(patterns.length).toBeGreaterThan(10);
    const unplaced = Object.keys(configSchema.shape).filter(
      (key) => !patterns.some((pattern) => pattern.test(key)),
    );
    expect(
      unplaced,
      'keys missing from the map in docs/configuration.md ("The settings by subject")',
    ).toEqual([]);
  });
});
