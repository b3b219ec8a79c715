/** Every error mtagent raises on purpose has a stable `code` that tests and operators can rely on. */
export class MtagentError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MtagentError';
    this.code = code;
  }
}

/** An error from a system call, as Node's fs and the native addon raise them. */
export interface SystemError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

export function isSystemError(err: unknown): err is SystemError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string';
}

export function hasCode(err: unknown, code: string): boolean {
  return isSystemError(err) && err.code === code;
}
