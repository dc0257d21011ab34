/**
 * Error text from a failed delivery goes to the log; the webhook URL (Slack's carries its
 * token in the path), the signing secret and the SMTP password must not. Each secret, and the
 * encodings in which SMTP AUTH sends a password, is replaced wherever it appears.
 */
export function createRedactor(secrets: (string | undefined)[]): (text: string) => string {
  const needles = [
    ...new Set(secrets.filter((secret): secret is string => !!secret && secret.length >= 4)),
  ]
    // Longest first, so a URL is replaced whole before its path is.
    .sort((a, b) => b.length - a.length);
  return (text) =>
    needles.reduce((result, needle) => result.replaceAll(needle, '[redacted]'), text);
}

/** The parts of a webhook URL that may carry a token: all of it, its path, its query. */
export function urlSecrets(url: string): string[] {
  const parsed = new URL(url);
  const secrets = [url, parsed.toString(), `${parsed.pathname}${parsed.search}`];
  if (parsed.pathname !== '/') secrets.push(parsed.pathname);
  if (parsed.search) secrets.push(parsed.search.slice(1));
  return secrets.filter((secret) => secret !== '/' && secret !== '');
}

/** A password as SMTP AUTH PLAIN and LOGIN carry it (base64). */
export function smtpPasswordSecrets(
  user: string | undefined,
  password: string | undefined,
): string[] {
  if (!password) return [];
  return [
    password,
    Buffer.from(password).toString('base64'),
    Buffer.from(`\u0000${user ?? ''}\u0000${password}`).toString('base64'),
    encodeURIComponent(password),
  ];
}
