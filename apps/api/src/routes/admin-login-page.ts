import { type AdminSession, adminPaths, type SignInRefusal } from '../plugins/app/admin-session.js';

const messages: Record<SignInRefusal, string> = {
  'signed-out': 'Sign in to open the queues.',
  expired: 'The token has expired: sign in with a new one.',
  invalid: 'That token is not valid (signature, algorithm or user).',
  forbidden: 'That token is not an admin’s (role SUPER_ADMIN or permission backup:manage).',
  'too-many': 'Too many failed sign-ins from this address: wait a minute, then try again.',
};

export function isSignInRefusal(value: string | undefined): value is SignInRefusal {
  return value !== undefined && Object.hasOwn(messages, value);
}

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (char) =>
      ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[char] ?? char,
  );

/**
 * The sign-in page of the operators' board: a form that posts an admin token, or, when the
 * cookie is already good, who is signed in and a sign-out button. No script, nothing echoed
 * from the URL but one of its fixed messages.
 */
export function loginPage(session: AdminSession | null, refusal: SignInRefusal | null): string {
  const notice = refusal ? `<p class="notice" role="alert">${messages[refusal]}</p>` : '';
  const body = session
    ? `<p>Signed in as <strong>${escapeHtml(session.requestedBy)}</strong>${
        session.expiresAt ? ` until ${escapeHtml(session.expiresAt.toISOString())}` : ''
      }.</p>
    <p><a href="${adminPaths.board}">Open the queues</a> · <a href="/docs">API docs</a></p>
    <form method="post" action="${adminPaths.logout}"><button type="submit">Sign out</button></form>`
    : `${notice}
    <form method="post" action="${adminPaths.login}">
      <label for="token">Admin token (<code>npm run token</code>)</label>
      <input id="token" name="token" type="password" autocomplete="off" required>
      <button type="submit">Sign in</button>
    </form>`;
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>pgkeep · operators</title>
  <style>
    body { font: 16px/1.5 system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem; }
    label, input, button { display: block; width: 100%; box-sizing: border-box; margin: .5rem 0; }
    input, button { padding: .5rem; font: inherit; }
    .notice { color: #8a1c1c; }
  </style>
</head>
<body>
  <h1>pgkeep · operators</h1>
  ${body}
</body>
</html>
`;
}
