// The daemon's control socket: a Unix socket in dataDir, mode 0600, carrying
// newline-delimited JSON. Each request is {id, op, args}; the daemon answers
// with progress lines {id, progress} and one final {id, ok, result | error}.
import { chmodSync, existsSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { MtagentError } from '../errors';
import type { Logger } from '../log';
import { runOperation, type AgentContext, type Progress } from './operations';

export function controlSocketPath(dataDir: string): string {
  return join(dataDir, 'control.sock');
}

/** An operation to run, or the cancelling of one the same connection asked for. */
interface Request {
  id: number;
  op?: string;
  args?: Record<string, unknown>;
  cancel?: boolean;
}

type Reply =
  | { id: number; progress: { phase: string; done: number; total: number } }
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { code: string; message: string } };

function lines(socket: Socket, onLine: (line: string) => void): void {
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim().length > 0) onLine(line);
    }
  });
}

export class ControlServer {
  private readonly server: Server;
  readonly path: string;

  private constructor(server: Server, path: string) {
    this.server = server;
    this.path = path;
  }

  static async start(dataDir: string, ctx: AgentContext, log: Logger): Promise<ControlServer> {
    const path = controlSocketPath(dataDir);
    // A socket file left by a killed daemon: nobody answers on it any more.
    if (existsSync(path) && !(await isAnswering(path))) rmSync(path, { force: true });
    const server = createServer((socket) => {
      // What this connection asked for and is still running: a cancel, or the command going away, stops it.
      const running = new Map<number, { op: string; controller: AbortController }>();
      lines(socket, (line) => {
        let req: Request;
        try {
          req = JSON.parse(line) as Request;
        } catch {
          socket.end(`${JSON.stringify({ id: 0, ok: false, error: { code: 'bad-usage', message: 'unparsable request' } })}\n`);
          return;
        }
        if (req.cancel) {
          const r = running.get(req.id);
          if (r) {
            log.warn({ op: r.op }, 'control request cancelled by the command');
            r.controller.abort();
          }
          return;
        }
        const op = req.op ?? '';
        const send = (r: Reply): void => void (socket.writable && socket.write(`${JSON.stringify(r)}\n`));
        let lastProgress = 0;
        const progress: Progress = (phase, done, total) => {
          const now = Date.now();
          if (now - lastProgress < 200 && done < total) return;
          lastProgress = now;
          send({ id: req.id, progress: { phase, done, total } });
        };
        const controller = new AbortController();
        running.set(req.id, { op, controller });
        log.debug({ op, args: req.args }, 'control request');
        runOperation(ctx, true, op, req.args ?? {}, progress, controller.signal)
          .then(
            (result) => send({ id: req.id, ok: true, result }),
            (err: unknown) => {
              if (controller.signal.aborted) {
                send({ id: req.id, ok: false, error: { code: 'cancelled', message: `${op} cancelled` } });
                return;
              }
              const code = err instanceof MtagentError ? err.code : 'internal';
              if (code === 'internal') log.error({ err, op }, 'control request failed');
              send({ id: req.id, ok: false, error: { code, message: err instanceof Error ? err.message : String(err) } });
            },
          )
          .finally(() => running.delete(req.id));
      });
      socket.on('close', () => {
        for (const r of running.values()) {
          log.warn({ op: r.op }, 'control request cancelled: the command went away');
          r.controller.abort();
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600);
    return new ControlServer(server, path);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

function isAnswering(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** How long a cancelled operation may take to stop and clean up before the command gives up waiting. */
const CANCEL_WAIT_MS = 10_000;

/**
 * Sends one operation to the running daemon. Resolves with its result, or
 * with `undefined` when no daemon listens (the caller then works offline).
 * `signal` cancels it: the daemon stops the work, cleans up, and answers
 * `cancelled`.
 */
export function callDaemon(dataDir: string, op: string, args: Record<string, unknown>, onProgress?: Progress, signal?: AbortSignal): Promise<{ result: unknown } | undefined> {
  const path = controlSocketPath(dataDir);
  return new Promise((resolve, reject) => {
    if (!existsSync(path)) {
      resolve(undefined);
      return;
    }
    const socket = createConnection(path);
    let connected = false;
    const cancel = (): void => {
      if (!connected) {
        socket.destroy();
        reject(new MtagentError('cancelled', `${op} cancelled`));
        return;
      }
      socket.write(`${JSON.stringify({ id: 1, cancel: true })}\n`);
      setTimeout(() => socket.destroy(), CANCEL_WAIT_MS).unref();
    };
    if (signal?.aborted) cancel();
    else signal?.addEventListener('abort', cancel, { once: true });
    socket.once('connect', () => {
      connected = true;
      socket.write(`${JSON.stringify({ id: 1, op, args })}\n`);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (!connected && (err.code === 'ECONNREFUSED' || err.code === 'ENOENT')) resolve(undefined);
      else reject(new MtagentError('control-failed', `the daemon's control socket ${path}: ${err.message}`));
    });
    socket.once('close', () => {
      if (connected) reject(new MtagentError('control-failed', `the daemon closed the control socket before answering ${op}`));
    });
    lines(socket, (line) => {
      const r = JSON.parse(line) as Reply;
      if ('progress' in r) {
        onProgress?.(r.progress.phase, r.progress.done, r.progress.total);
        return;
      }
      socket.removeAllListeners('close');
      signal?.removeEventListener('abort', cancel);
      socket.end();
      if (r.ok) resolve({ result: r.result });
      else reject(new MtagentError(r.error.code, r.error.message));
    });
  });
}
