/**
 * Where a target's backups live inside every destination: the target `default` at the top (as
 * backups were laid out before targets, so an existing directory or bucket keeps working), every
 * other target under `targets/<name>/` (`targets/<server>/<database>/` for a discovered one).
 * Names are validated before they get here; this only joins them.
 */
export function targetStoragePrefix(target: string): string {
  return target === 'default' ? '' : `targets/${target}/`;
}
