import { loadConfig, type LoadedConfig } from '../../config/load.ts';

/** Loads configuration for a command from `--config` or the working directory. */
export function configFor(values: Record<string, string | boolean | undefined>): Promise<LoadedConfig> {
  return loadConfig(typeof values.config === 'string' ? { file: values.config } : {});
}
