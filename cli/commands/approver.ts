import { ApproverClient } from '../../human/approver-client.ts';
import { startApproverServer } from '../../human/web/index.ts';
import { loadApproverKey } from '../approver-key.ts';
import { connectClient } from '../connect.ts';
import type { Command } from '../main.ts';
import { configFor } from './options.ts';

export const approverCommand: Command = {
  summary: 'serve the approver web page (live list, approve / edit / reject), signing with your key',
  usage: 'troupe approver [--port 8080] [--host 127.0.0.1] [--token T (required beyond loopback)] [--key file]',
  options: { port: { type: 'string' }, host: { type: 'string' }, token: { type: 'string' }, key: { type: 'string' } },
  async run({ values }) {
    const key = loadApproverKey(values);
    const loaded = await configFor(values);
    const client = await ApproverClient.connect(await connectClient(loaded, 'troupe-approver-web', 'approvers'), { prefix: loaded.config.prefix, key });
    const server = await startApproverServer({
      client,
      port: Number(values.port ?? 8080),
      ...(typeof values.host === 'string' ? { host: values.host } : {}),
      ...(typeof values.token === 'string' ? { accessToken: values.token } : {}),
    });
    process.stdout.write(`approver page for ${client.publicKey} at ${server.url}${typeof values.token === 'string' ? `/?token=${values.token}` : ''}\nCtrl-C to stop\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await server.close();
    await client.close();
    return 0;
  },
};
