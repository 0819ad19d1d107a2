export {
  natsCredentialsSchema,
  natsRoles,
  renderNatsConfig,
  rolePermissions,
  roleUsers,
  writeNatsConfig,
  type ClusterSection,
  type NatsConfig,
  type NatsConfigOptions,
  type NatsCredentials,
  type NatsRole,
  type RolePermissions,
} from './nats-config.ts';
export { nodeConfigFile, writeNatsClusterConfig, type NatsClusterConfig, type NatsClusterConfigOptions, type NatsClusterNode } from './cluster-config.ts';
export { writePrivateFile } from './private-file.ts';
export { natsUsersFileSchema, readNatsUsersFile, writeNatsUsersFile, type NatsUsers } from './users-file.ts';
