import { AppError } from '@pgkeep/core';
import type { ApiServices, TargetServices } from './api-services.js';

/**
 * The services for one target, by name; without a name, the target the panel's `/api/backup`
 * routes act on: `default`, or the only target there is.
 */
export async function forTarget(services: ApiServices, name?: string): Promise<TargetServices> {
  const targetName = name ?? services.registry.defaultTargetName();
  if (targetName === undefined) {
    throw new AppError(
      'TARGET_NOT_FOUND',
      'there is no target `default`: name one under /api/targets/:target',
    );
  }
  const target = services.registry.require(targetName);
  // A discovered name must be a database the server has now, not just one its patterns allow.
  if (target.configured.database === null) {
    const found = await services.registry.discover(target.configured);
    if (!found.includes(target.info.settings.database ?? '')) {
      throw new AppError('TARGET_NOT_FOUND', `target ${targetName} not found`);
    }
  }
  return { ...services, target, storage: await services.registry.storeFor(target.info) };
}
