export {
  natsCredentialsSchema,
  natsRoles,
  renderNatsConfig,
  rolePermissions,
  writeNatsConfig,
  type NatsConfig,
  type NatsConfigOptions,
  type NatsCredentials,
  type NatsRole,
  type RolePermissions,
} from './nats-config.ts';
export { writePrivateFile } from './private-file.ts';
export { natsUsersFileSchema, readNatsUsersFile, writeNatsUsersFile, type NatsUsers } from './users-file.ts';
