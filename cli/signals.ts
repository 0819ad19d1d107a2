import type { Logger } from 'pino';

/**
 * Resolves on the first SIGINT or SIGTERM so the caller can shut down gracefully; a second
 * signal exits at once (status 130).
 */
export function untilSignal(logger: Logger, shuttingDown: string): Promise<void> {
  return new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(130);
      }
      logger.info({ signal }, shuttingDown);
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
