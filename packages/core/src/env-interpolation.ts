import type { FileIssues, FilePath } from './targets-document.js';

/**
 * `${NAME}` in the string values of a parsed targets file, replaced by the environment's value.
 * It runs on parsed values, never on the text, so a value cannot add keys or structure; keys
 * are left as written. `$${` is a literal `${`. An unset or empty variable is an error naming
 * the variable, never a value (empty counts as unset, as in the environment's own keys).
 */
const MAX_DEPTH = 16;
const reference = /\$\$\{|\$\{([A-Z_][A-Z0-9_]*)\}|\$\{/g;

function interpolateString(
  value: string,
  path: FilePath,
  env: Record<string, string | undefined>,
  issues: FileIssues,
): string {
  return value.replace(reference, (match, name: string | undefined) => {
    if (match === '$${') return '${';
    if (name === undefined) {
      issues.addUnresolved(
        path,
        `"\${" must start a variable such as \${DB_PASSWORD} (write $\${ for "\${")`,
      );
      return match;
    }
    const replacement = env[name];
    if (replacement === undefined || replacement === '') {
      issues.addUnresolved(path, `\${${name}} is not set in the environment`);
      return match;
    }
    return replacement;
  });
}

export function interpolateEnv(
  value: unknown,
  path: FilePath,
  env: Record<string, string | undefined>,
  issues: FileIssues,
): unknown {
  // A targets file is a few levels deep; a deeper value is a mistake, and unbounded
  // recursion over it would end the process with a stack overflow instead of a message.
  if (path.length > MAX_DEPTH) {
    issues.add(path, 'is nested too deeply');
    return null;
  }
  if (typeof value === 'string') return interpolateString(value, path, env, issues);
  if (Array.isArray(value)) {
    return value.map((item, index) => interpolateEnv(item, [...path, index], env, issues));
  }
  if (value !== null && typeof value === 'object') {
    // fromEntries defines own properties: a key `__proto__` stays a key (and is refused later).
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [
        key,
        interpolateEnv(item, [...path, key], env, issues),
      ]),
    );
  }
  return value;
}
