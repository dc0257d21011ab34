// Builds each app to plain JavaScript: one ESM bundle per entry point (apps/<app>/src/main.ts
// and apps/<app>/src/cli/*.ts) in apps/<app>/dist, with source maps. Run with
// `node --enable-source-maps apps/<app>/dist/main.js`.
//
// Why a bundle: under `node --import tsx` the loader and its transpiled modules cost each
// process about 30 MB of RSS (worker idle in the bench: ~125 MB under tsx, ~97 MB bundled). The workspace packages (@pgkeep/*) are bundled in; everything from
// node_modules stays an import, resolved at run time as before, so that a lazy `import()` of a
// heavy optional dependency stays lazy and packages that find files or workers of their own
// (pino transports, swagger-ui and Bull Board static files) work unchanged.
//
//   node scripts/build.mjs            every app
//   node scripts/build.mjs api        only the named apps
//   node scripts/build.mjs --quiet    errors only (for `npm run -s token`)
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const appsDir = path.join(root, 'apps');

/** The entry points of an app, relative to its src/: main.ts and every cli/*.ts. */
async function entryPoints(app) {
  const cliDir = path.join(appsDir, app, 'src', 'cli');
  const cli = await readdir(cliDir).catch(() => []);
  return [
    'main.ts',
    ...cli.filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts')).map((f) => `cli/${f}`),
  ];
}

const insideNodeModules = (file) => file.split(path.sep).includes('node_modules');

/**
 * Bundles @pgkeep/* and relative imports, keeps every other bare import external, and fails
 * the build when such an import, written in a workspace package, would load another copy from
 * the bundle's directory than from the package's own (a version only that package has).
 */
function workspaceOnly(appDir) {
  return {
    name: 'workspace-only',
    setup(build) {
      const checked = new Map();
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.pluginData === 'default' || args.path.startsWith('@pgkeep/')) return undefined;
        if (args.path.startsWith('node:')) return { external: true };
        const key = `${args.resolveDir}\0${args.path}`;
        if (!checked.has(key)) checked.set(key, sameCopy(build, args, appDir));
        const error = await checked.get(key);
        return error ? { errors: [{ text: error }] } : { external: true };
      });
    },
  };
}

// From the app's directory: dist holds no node_modules, so Node, starting from a bundle in
// dist, finds what it would find from there (and dist may not exist yet).
async function sameCopy(build, args, appDir) {
  const resolve = (resolveDir) =>
    build.resolve(args.path, { kind: args.kind, resolveDir, pluginData: 'default' });
  const [here, there] = await Promise.all([resolve(args.resolveDir), resolve(appDir)]);
  if (here.errors.length > 0 || here.external || there.path === here.path) return undefined;
  return `"${args.path}" is ${path.relative(root, here.path)} from ${path.relative(root, args.resolveDir)} but ${there.path ? path.relative(root, there.path) : 'not found'} from ${path.relative(root, appDir)}: make it a dependency of the app too, at the same version`;
}

/**
 * `import.meta.url` in a bundle is the bundle's URL; the sources mean their own file's (for
 * `new URL('../../package.json', import.meta.url)`). Rewritten to the source file's URL,
 * relative to the output file, so dist still works when the tree is moved or copied.
 */
function sourceImportMeta(outdir) {
  return {
    name: 'source-import-meta',
    setup(build) {
      build.onLoad({ filter: /\.[cm]?ts$/ }, async (args) => {
        if (insideNodeModules(args.path)) return undefined;
        const source = await readFile(args.path, 'utf8');
        if (/\bimport\.meta\.(dirname|filename)\b/.test(source)) {
          return {
            errors: [
              { text: 'use import.meta.url: import.meta.dirname/filename are not rewritten' },
            ],
          };
        }
        if (!source.includes('import.meta.url')) return { contents: source, loader: 'ts' };
        const relative = path.relative(outdir, args.path).split(path.sep).join('/');
        return {
          contents: source.replaceAll(
            /\bimport\.meta\.url\b/g,
            `new URL(${JSON.stringify(relative)}, import.meta.url).href`,
          ),
          loader: 'ts',
        };
      });
    },
  };
}

/** Writes through a temporary file and a rename: a process starting from dist meanwhile reads
 * the old file or the new one, never half of one (tests and `npm start` may run side by side). */
async function writeAtomically(file, contents) {
  const existing = await readFile(file).catch(() => undefined);
  if (existing?.equals(contents)) return;
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, contents);
  await rename(temporary, file);
}

/**
 * Files of dist that this build did not write (a removed entry point): deleted. Temporary
 * files are left alone: they may be another build's, about to be renamed.
 */
async function removeStale(dir, keep) {
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) await removeStale(file, keep);
    else if (!keep.has(file) && !file.endsWith('.tmp')) await rm(file, { force: true });
  }
}

/** Builds the named apps (default: all); resolves with the files written. */
export async function buildApps(apps) {
  const names =
    apps && apps.length > 0
      ? apps
      : (await readdir(appsDir, { withFileTypes: true }))
          .filter((d) => d.isDirectory())
          .map((d) => d.name);
  const jobs = [];
  for (const app of names) {
    const outdir = path.join(appsDir, app, 'dist');
    for (const entry of await entryPoints(app)) {
      const outfile = path.join(outdir, entry.replace(/\.ts$/, '.js'));
      // One build per entry point: each output file has its own directory, which the
      // import.meta.url rewrite and the dependency check are relative to.
      jobs.push(
        esbuild
          .build({
            absWorkingDir: root,
            entryPoints: [path.join(appsDir, app, 'src', entry)],
            outdir: path.dirname(outfile),
            entryNames: '[name]',
            // A lazy `import()` of workspace code (the S3 driver) becomes its own file beside
            // the entry, so its static imports (the AWS SDK) load only when it does. Same
            // directory as the entry: the import.meta.url rewrite below stays right for it.
            splitting: true,
            chunkNames: '[name]-[hash]',
            bundle: true,
            format: 'esm',
            platform: 'node',
            target: 'node20',
            sourcemap: 'linked',
            // Stack traces need the mappings only; the .ts files are beside dist.
            sourcesContent: false,
            write: false,
            logLevel: 'silent',
            plugins: [
              workspaceOnly(path.join(appsDir, app)),
              sourceImportMeta(path.dirname(outfile)),
            ],
          })
          .then((result) => ({ outdir, files: result.outputFiles })),
      );
    }
  }
  const built = await Promise.all(jobs);
  const written = [];
  for (const { files } of built) {
    for (const file of files) {
      await writeAtomically(file.path, Buffer.from(file.contents));
      written.push(file.path);
    }
  }
  const keep = new Set(written);
  for (const outdir of new Set(built.map((b) => b.outdir))) await removeStale(outdir, keep);
  return written;
}

/**
 * Builds (as buildApps) and reports on stderr: the bundles written, or esbuild's errors with
 * file:line:column. Stops esbuild's service process. Resolves with whether the build succeeded.
 */
export async function runBuild(apps, { quiet = false } = {}) {
  const started = performance.now();
  try {
    const written = await buildApps(apps);
    const bundles = written.filter((file) => file.endsWith('.js'));
    if (!quiet) {
      process.stderr.write(
        `built ${bundles.map((file) => path.relative(root, file)).join(', ')} in ${Math.round(performance.now() - started)} ms\n`,
      );
    }
    return true;
  } catch (error) {
    const messages = error?.errors
      ? await esbuild.formatMessages(error.errors, { kind: 'error', color: false })
      : [`${error?.stack ?? error}\n`];
    process.stderr.write(`build failed:\n${messages.join('')}`);
    return false;
  } finally {
    await esbuild.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values, positionals } = parseArgs({
    options: { quiet: { type: 'boolean', default: false } },
    allowPositionals: true,
  });
  if (!(await runBuild(positionals, { quiet: values.quiet }))) process.exitCode = 1;
}
