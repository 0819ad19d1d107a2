export { renderNatsConfig, rolePermissions, writeNatsConfig, type NatsConfig, type NatsConfigOptions, type NatsCredentials, type NatsRole, type RolePermissions } from './nats-config.ts';
