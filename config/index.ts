export { configSchema, type TroupeConfig, type TroupeConfigInput } from './schema.ts';
export { loadConfig, compileConfig, formatIssues, CONFIG_FILES, type LoadConfigOptions, type LoadedConfig } from './load.ts';
export { ConfigError } from './errors.ts';
