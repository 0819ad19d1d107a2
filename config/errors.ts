import { ErrorCode, TerminalError } from '../common/errors.ts';

/** Invalid configuration: names the file, the field and what is expected. */
export class ConfigError extends TerminalError {
  override readonly name = 'ConfigError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.invalidConfig, message, options);
  }
}
