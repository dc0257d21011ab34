import recorded from '../../../docs/api-examples.json' with { type: 'json' };

/**
 * One request to the real API and what it answered, as recorded by
 * test/api-examples.int.test.ts (`npm run docs:examples`) with ids, times and names replaced
 * by stable placeholders. The OpenAPI document and docs/api.md take their examples from here.
 */
export interface ApiExample {
  title: string;
  request: {
    method: string;
    url: string;
    headers?: Record<string, string>;
    body?: unknown;
  };
  response: {
    status: number;
    headers?: Record<string, string>;
    /** JSON as answered; text as answered; null for bytes (their size is in the headers). */
    body: unknown;
  };
}

export interface ApiExamples {
  /** Per operationId, in the order recorded. */
  operations: Record<string, ApiExample[]>;
}

export const apiExamples = recorded as unknown as ApiExamples;

/** An example's name in the OpenAPI document: its title in lower camel case, unique per map. */
export function exampleKey(title: string): string {
  const words = title
    .replace(/[^A-Za-z0-9]+/g, ' ')
    .trim()
    .split(' ')
    .filter(Boolean);
  return words
    .map((word, i) => (i === 0 ? word.toLowerCase() : word[0]?.toUpperCase() + word.slice(1)))
    .join('');
}
