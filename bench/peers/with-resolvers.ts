/**
 * `Promise.withResolvers` for Node 20, which lacks it (Node 22 has it). The Restate SDK calls it on
 * every invocation; without it each invocation throws inside the SDK and Restate retries it
 * forever. Installs nothing when the runtime has it.
 */
interface WithResolvers {
  withResolvers?: <T>() => { promise: Promise<T>; resolve: (value: T | PromiseLike<T>) => void; reject: (reason?: unknown) => void };
}

export function installPromiseWithResolvers(): void {
  const P = Promise as unknown as WithResolvers;
  if (typeof P.withResolvers === 'function') return;
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T>() {
      let resolve!: (value: T | PromiseLike<T>) => void;
      let reject!: (reason?: unknown) => void;
      const promise = new Promise<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}
