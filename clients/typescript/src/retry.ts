/**
 * Retry and backoff policy. What is retried, and why that is safe: every call can be sent
 * again — reads are idempotent, and every write carries a `request_token` the daemon
 * remembers (PROTOCOL.md §8), so a resent write is answered, not applied again. When a
 * connection breaks, or the daemon says it is shutting down or busy, the calls in flight
 * are resent on the next connection in the order they were first sent, ahead of any newer
 * call.
 *
 * How long: a client that has been connected keeps reconnecting, with exponential backoff
 * and full jitter, for `reconnectTimeoutMs` after the connection was lost (long enough to
 * ride out a daemon restart); a client that has never reached the daemon gives up after
 * `firstConnectTimeoutMs` (a wrong socket path should fail fast). Timeouts are not retried
 * (the caller's deadline has passed), nor are errors a resend cannot fix (`forbidden`,
 * `frame_too_large`, a protocol error).
 */
import {
  BusyError,
  ConnectionLostError,
  DaemonUnavailableError,
  type SessiondError,
  ShuttingDownError,
} from "./errors.js";

/** Exponential backoff with full jitter: attempt n waits a random time in
 *  `[0, min(capMs, baseMs * 2**n))`. */
export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;

  constructor(options: { baseMs?: number; capMs?: number } = {}) {
    this.baseMs = options.baseMs ?? 20;
    this.capMs = options.capMs ?? 1000;
  }

  delayMs(attempt: number, random: () => number = Math.random): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(attempt, 30));
    return random() * ceiling;
  }
}

export class RetryPolicy {
  readonly backoff: Backoff;
  readonly reconnectTimeoutMs: number;
  readonly firstConnectTimeoutMs: number;

  constructor(
    options: { backoff?: Backoff; reconnectTimeoutMs?: number; firstConnectTimeoutMs?: number } = {},
  ) {
    this.backoff = options.backoff ?? new Backoff();
    this.reconnectTimeoutMs = options.reconnectTimeoutMs ?? 10_000;
    this.firstConnectTimeoutMs = options.firstConnectTimeoutMs ?? 1_000;
  }

  /** How long to keep trying to (re)connect before failing the waiting calls. */
  budgetMs(everConnected: boolean): number {
    return everConnected ? this.reconnectTimeoutMs : this.firstConnectTimeoutMs;
  }

  /** Whether the calls in flight when `error` ended a connection may be resent. */
  static resendable(error: SessiondError): boolean {
    return (
      error instanceof ConnectionLostError ||
      error instanceof ShuttingDownError ||
      error instanceof BusyError ||
      error instanceof DaemonUnavailableError
    );
  }
}
