/**
 * The sessiond error tree. Every failure a client call can produce is a
 * {@link SessiondError}:
 *
 * - {@link TransportError}: the connection could not be made or broke
 *   ({@link DaemonUnavailableError}, {@link ConnectionLostError},
 *   {@link RequestTimeoutError}).
 * - {@link ProtocolError}: the peer sent something that is not this protocol (or a reply
 *   larger than the daemon's announced `max_reply_bytes`).
 * - {@link ClientClosedError}: the client was closed.
 * - {@link ServerError}: the daemon answered `ok: false`; one subclass per wire code. An
 *   unknown code (a newer daemon) gives a plain `ServerError` whose `.code` keeps the wire
 *   spelling.
 *
 * A call aborted through its `signal` rejects with the signal's `reason` (an `AbortError`
 * `DOMException` unless the caller gave another), as Node's own APIs do.
 */

export class SessiondError extends Error {
  constructor(message = "", options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The client was closed: calls in flight fail with this at once, new calls too. */
export class ClientClosedError extends SessiondError {}

/** The request could not be delivered or its reply could not be received. */
export class TransportError extends SessiondError {}

/** Connecting to the daemon's socket failed (not running, refused, wrong path). */
export class DaemonUnavailableError extends TransportError {}

/** The connection closed while requests were in flight. */
export class ConnectionLostError extends TransportError {}

/** No reply arrived within the call's timeout; the connection is discarded. */
export class RequestTimeoutError extends TransportError {}

/** The peer sent bytes that do not follow the sessiond wire protocol. */
export class ProtocolError extends SessiondError {}

/** The daemon answered `ok: false`. `code` is the wire error code. */
export class ServerError extends SessiondError {
  /** The wire error code (`invalid_request`, `conflict`, ...). */
  readonly code: string;

  constructor(message = "", code?: string) {
    super(message);
    this.code = code ?? (new.target as unknown as { CODE?: string }).CODE ?? "server_error";
  }

  static readonly CODE: string = "server_error";
}

/** Not msgpack, wrong types, bad key/agent/field, a value outside the value model, a reply
 *  that would be too large, a reused token, ... Also raised by the client itself, without
 *  sending anything, for a value msgpack cannot carry (a BigInt, a function, a cycle). */
export class InvalidRequestError extends ServerError {
  static override readonly CODE = "invalid_request";
}
/** The request named an operation this daemon does not know. */
export class UnknownOpError extends ServerError {
  static override readonly CODE = "unknown_op";
}
/** A request frame over `max_frame_bytes`. The client checks this before sending, so the
 *  connection (and the other calls on it) survive. */
export class FrameTooLargeError extends ServerError {
  static override readonly CODE = "frame_too_large";
}
/** Reserved; not sent by protocol version 1. */
export class NotFoundError extends ServerError {
  static override readonly CODE = "not_found";
}
/** `ifRevision` or `ifAbsent` did not hold: nothing changed. Re-read, then decide. */
export class ConflictError extends ServerError {
  static override readonly CODE = "conflict";
}
/** The peer's uid/gid is not allowed, or a path would leave the state directory. */
export class ForbiddenError extends ServerError {
  static override readonly CODE = "forbidden";
}
/** The store cannot be served, or persistence is failing (see the message). */
export class UnavailableError extends ServerError {
  static override readonly CODE = "unavailable";
}
/** The daemon's connection limit was reached (retried by the client). */
export class BusyError extends ServerError {
  static override readonly CODE = "busy";
}
/** The daemon is stopping (retried by the client after reconnecting). */
export class ShuttingDownError extends ServerError {
  static override readonly CODE = "shutting_down";
}
/** A bug in the daemon; the connection stays usable. */
export class InternalError extends ServerError {
  static override readonly CODE = "internal";
}
/** A watch's `since` is outside the kept history; `oldestSeq` is the oldest that works.
 *  List the store, then watch from the list's `seq`. */
export class CompactedError extends ServerError {
  static override readonly CODE = "compacted";
  readonly oldestSeq: number | null;

  constructor(message = "", code?: string, oldestSeq: number | null = null) {
    super(message, code);
    this.oldestSeq = oldestSeq;
  }
}
/** A watcher fell behind the kept history and was dropped; watch again from the last
 *  seq it processed. */
export class LaggedError extends ServerError {
  static override readonly CODE = "lagged";
}

type ServerErrorClass = new (message?: string, code?: string) => ServerError;

const SERVER_ERRORS: ReadonlyMap<string, ServerErrorClass> = new Map<string, ServerErrorClass>([
  [InvalidRequestError.CODE, InvalidRequestError],
  [UnknownOpError.CODE, UnknownOpError],
  [FrameTooLargeError.CODE, FrameTooLargeError],
  [NotFoundError.CODE, NotFoundError],
  [ConflictError.CODE, ConflictError],
  [ForbiddenError.CODE, ForbiddenError],
  [UnavailableError.CODE, UnavailableError],
  [BusyError.CODE, BusyError],
  [ShuttingDownError.CODE, ShuttingDownError],
  [InternalError.CODE, InternalError],
  [CompactedError.CODE, CompactedError],
  [LaggedError.CODE, LaggedError],
]);

/** The wire error codes of protocol version 1. */
export const ERROR_CODES: readonly string[] = [...SERVER_ERRORS.keys()];

/** The exception for a wire error; unknown codes give a plain {@link ServerError}. */
export function serverErrorFor(
  code: string,
  message: string,
  oldestSeq: number | null = null,
): ServerError {
  if (code === CompactedError.CODE) return new CompactedError(message, code, oldestSeq);
  const cls = SERVER_ERRORS.get(code);
  return cls === undefined ? new ServerError(message, code) : new cls(message, code);
}
