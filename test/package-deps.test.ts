import { readdirSync, readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * Every workspace declares what its src imports: a package that works only because another one
 * happened to install its dependency breaks when that one stops needing it, and a built app
 * (esbuild bundles what it finds) can ship a version nobody chose.
 *
 * Production files: a module loaded at run time is in `dependencies`; a type-only import may be
 * in `devDependencies` too, or need nothing when the root provides its `@types/…` package.
 * Test files (`*.test.ts`) may also use the root's shared test tools (its devDependencies, other
 * than workspace packages, which each package declares itself).
 */

const root = join(import.meta.dirname, '..');

interface Manifest {
  name: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

interface Use {
  file: string;
  module: string;
  typeOnly: boolean;
}

function readManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}

/** `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
}

/** `pg` → `@types/pg`, `@scope/name` → `@types/scope__name`. */
function typesPackage(name: string): string {
  return `@types/${name.startsWith('@') ? name.slice(1).replace('/', '__') : name}`;
}

/** The bare modules a file imports, from its syntax tree (comments and strings are not imports). */
function importsOf(file: string): Use[] {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false);
  const uses: Use[] = [];
  const add = (node: ts.Node | undefined, typeOnly: boolean) => {
    if (!node || !ts.isStringLiteral(node)) return;
    const module = node.text;
    if (module.startsWith('.') || module.startsWith('node:') || isBuiltin(module)) return;
    uses.push({ file: relative(root, file), module: packageName(module), typeOnly });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      add(node.moduleSpecifier, node.importClause?.isTypeOnly === true);
    } else if (ts.isExportDeclaration(node)) {
      add(node.moduleSpecifier, node.isTypeOnly);
    } else if (ts.isImportTypeNode(node)) {
      // `typeof import('x')` in a type position.
      const argument = node.argument;
      if (ts.isLiteralTypeNode(argument)) add(argument.literal, true);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], false);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return uses;
}

const rootManifest = readManifest(root);
const sharedTestTools = new Set(
  Object.keys(rootManifest.devDependencies ?? {}).filter((name) => !name.startsWith('@pgkeep/')),
);
const rootTypes = new Set(
  Object.keys(rootManifest.devDependencies ?? {}).filter((name) => name.startsWith('@types/')),
);

function undeclared(dir: string): string[] {
  const manifest = readManifest(dir);
  const runtime = new Set([
    ...Object.keys(manifest.dependencies ?? {}),
    ...Object.keys(manifest.peerDependencies ?? {}),
  ]);
  const buildTime = new Set([...runtime, ...Object.keys(manifest.devDependencies ?? {})]);
  const problems = new Set<string>();
  for (const file of sourceFiles(join(dir, 'src'))) {
    const isTest = file.endsWith('.test.ts');
    for (const use of importsOf(file)) {
      if (use.module === manifest.name) continue;
      const declared = isTest
        ? buildTime.has(use.module) || sharedTestTools.has(use.module)
        : use.typeOnly
          ? buildTime.has(use.module) || rootTypes.has(typesPackage(use.module))
          : runtime.has(use.module);
      if (!declared) {
        const where = isTest || use.typeOnly ? 'devDependencies' : 'dependencies';
        problems.add(`${use.file} imports ${use.module}, not in ${manifest.name}'s ${where}`);
      }
    }
  }
  return [...problems].sort();
}

const workspaces = ['packages', 'apps'].flatMap((parent) =>
  readdirSync(join(root, parent), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => join(parent, entry.name)),
);

describe('package dependencies', () => {
  it('finds the workspaces and their imports', () => {
    expect(workspaces).toEqual(
      expect.arrayContaining(['packages/core', 'apps/api', 'apps/worker']),
    );
    const coreUses = sourceFiles(join(root, 'packages/core/src')).flatMap(importsOf);
    expect(coreUses).toContainEqual(
      expect.objectContaining({ module: 'zod', file: 'packages/core/src/config.ts' }),
    );
    expect(importsOf(join(root, 'apps/api/src/plugins/external/swagger.ts'))).toContainEqual(
      expect.objectContaining({ module: 'openapi-types', typeOnly: true }),
    );
  });

  it.each(workspaces)('%s declares every package its src imports', (dir) => {
    expect(undeclared(join(root, dir))).toEqual([]);
  });
});
