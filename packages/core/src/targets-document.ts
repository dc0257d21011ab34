import { extname } from 'node:path';
import {
  type ErrorCode,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type YAMLError,
} from 'yaml';

/**
 * A targets file's text → plain values, or the reasons it is not one. Nothing here ever copies
 * text of the file into a message (a password may sit on any line): messages carry a path, or
 * a line and column, and a fixed description.
 */

export const MAX_TARGETS_FILE_BYTES = 1024 * 1024;

export type FilePath = readonly (string | number)[];

/** `targets.panel.tables.include[1]`. */
export function formatPath(path: FilePath): string {
  let text = '';
  for (const part of path) {
    text += typeof part === 'number' ? `[${part}]` : text === '' ? part : `.${part}`;
  }
  return text;
}

export function fileIssue(path: FilePath, message: string): string {
  return path.length === 0
    ? `targets file: ${message}`
    : `targets file: ${formatPath(path)}: ${message}`;
}

/**
 * The problems found in a file. A value whose `${VAR}` could not be replaced is reported once,
 * for the variable: what its unreplaced text then breaks would only be noise.
 */
export class FileIssues {
  readonly list: string[] = [];
  private readonly unresolved = new Set<string>();

  add(path: FilePath, message: string): void {
    if (!this.unresolved.has(formatPath(path))) this.list.push(fileIssue(path, message));
  }

  addUnresolved(path: FilePath, message: string): void {
    this.list.push(fileIssue(path, message));
    this.unresolved.add(formatPath(path));
  }
}

const yamlProblems: Partial<Record<ErrorCode, string>> = {
  DUPLICATE_KEY: 'a key is given twice',
  TAG_RESOLVE_FAILED: 'a tag pgkeep does not read (no !tags here)',
  MULTIPLE_DOCS: 'more than one document (---)',
  BAD_INDENT: 'bad indentation',
  TAB_AS_INDENT: 'a tab used for indentation',
  MISSING_CHAR: 'a missing character (an unclosed quote or bracket, or no ": " after a key)',
  BAD_ALIAS: 'an alias to no anchor',
  RESOURCE_EXHAUSTION: 'nested too deeply, or too many aliases',
  BAD_DQ_ESCAPE: 'a bad escape in a double-quoted string',
  MULTILINE_IMPLICIT_KEY: 'a key over more than one line',
};

/** Keys given twice, anywhere: YAML's own check names no path, and JSON.parse has none. */
function duplicateKeys(node: unknown, path: FilePath, issues: string[]): void {
  if (isMap(node)) {
    const seen = new Set<string>();
    for (const pair of node.items) {
      if (!isScalar(pair.key)) {
        issues.push(fileIssue(path, 'keys must be plain names'));
        continue;
      }
      const key = String(pair.key.value);
      if (seen.has(key)) issues.push(fileIssue([...path, key], 'is given twice'));
      seen.add(key);
      duplicateKeys(pair.value, [...path, key], issues);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => {
      duplicateKeys(item, [...path, index], issues);
    });
  }
}

function where(lines: LineCounter, offset: number | undefined): string {
  if (offset === undefined) return '';
  const { line, col } = lines.linePos(offset);
  return `line ${line}, column ${col}: `;
}

function yamlIssue(lines: LineCounter, error: YAMLError): string {
  const problem = yamlProblems[error.code] ?? 'not valid YAML';
  return `targets file: ${where(lines, error.pos[0])}${problem} (${error.code})`;
}

/**
 * JSON.parse says `at position N` for most errors and quotes the text for others (never
 * shown); then the YAML parser's first complaint about the same text gives the place.
 */
function jsonIssue(lines: LineCounter, error: unknown, yamlErrors: YAMLError[]): string {
  const position = /at position (\d+)/.exec(error instanceof Error ? error.message : '')?.[1];
  const offset = position === undefined ? yamlErrors[0]?.pos[0] : Number(position);
  return `targets file: ${where(lines, offset)}not valid JSON`;
}

export type TargetsDocument = { ok: true; value: unknown } | { ok: false; issues: string[] };

/** YAML or JSON by the file's extension; JSON is parsed as JSON, and checked for repeated keys. */
export function readTargetsDocument(text: string, fileName: string): TargetsDocument {
  const extension = extname(fileName).toLowerCase();
  const json = extension === '.json';
  if (!json && extension !== '.yaml' && extension !== '.yml') {
    return { ok: false, issues: ['targets file: its name must end in .yaml, .yml or .json'] };
  }
  if (Buffer.byteLength(text, 'utf8') > MAX_TARGETS_FILE_BYTES) {
    return { ok: false, issues: ['targets file: is larger than 1 MiB'] };
  }
  try {
    const lines = new LineCounter();
    const doc = parseDocument(text, {
      lineCounter: lines,
      prettyErrors: false,
      // Warnings would go to the process's stderr, with a piece of the file in them.
      // ('silent' would also drop the error for a second document.)
      logLevel: 'error',
      uniqueKeys: true,
      version: '1.2',
      schema: 'core',
      merge: false,
    });
    const issues: string[] = [];
    duplicateKeys(doc.contents, [], issues);
    if (json) {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        return { ok: false, issues: [jsonIssue(lines, error, doc.errors)] };
      }
      return issues.length > 0 ? { ok: false, issues } : { ok: true, value };
    }
    // The walk above names the path of a repeated key; the parser's own report is a backstop.
    const named = issues.length > 0;
    for (const problem of [...doc.errors, ...doc.warnings]) {
      if (!(named && problem.code === 'DUPLICATE_KEY')) issues.push(yamlIssue(lines, problem));
    }
    if (issues.length > 0) return { ok: false, issues };
    return { ok: true, value: doc.toJS({ maxAliasCount: 100 }) as unknown };
  } catch {
    // Nesting too deep for the parser's stack, or an alias bomb refused by toJS.
    return { ok: false, issues: [`targets file: is not valid ${json ? 'JSON' : 'YAML'}`] };
  }
}
