/**
 * The wire format (PROTOCOL.md §2-§3): a frame is a 4-byte unsigned big-endian payload
 * length followed by one msgpack map. Pure: no I/O.
 */
import { Decoder, Encoder } from "@msgpack/msgpack";

import { InvalidRequestError, ProtocolError, type ServerError, serverErrorFor } from "./errors.js";

export const PROTOCOL_VERSION = 1;
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
export const FRAME_HEADER_BYTES = 4;
/** Request ids stay below this (PROTOCOL.md §3.1: JavaScript clients keep ids below 2^53). */
export const MAX_REQUEST_ID = Number.MAX_SAFE_INTEGER;

/** A decoded reply: `{id, ok, result | error, seq?}`. */
export interface Reply {
  id: number | null;
  ok: boolean;
  result: unknown;
  error: { code: string; message: string; oldestSeq: number | null } | null;
  seq: number | null;
}

// `ignoreUndefined`: a field set to `undefined` is left out, as JSON.stringify does.
const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

/** One request frame. Throws {@link InvalidRequestError} for a value msgpack cannot
 *  carry (BigInt, function, symbol, a cycle) — nothing is sent then. */
export function encodeRequestFrame(request: Record<string, unknown>): Buffer {
  let payload: Uint8Array;
  try {
    payload = encoder.encodeSharedRef(request);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InvalidRequestError(`the request cannot be encoded as msgpack (not sent): ${reason}`);
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.byteLength);
  frame.writeUInt32BE(payload.byteLength, 0);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function optionalInteger(value: unknown, what: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new ProtocolError(`${what} is not an integer: ${String(value)}`);
  }
  return value;
}

/** Set `object[key] = value` as an own property, also for the key `__proto__` (which
 *  plain assignment would take as the prototype), as `JSON.parse` does. */
export function setOwn(object: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  } else {
    object[key] = value;
  }
}

/**
 * A plain msgpack decoder for the payloads `@msgpack/msgpack` refuses: maps with a
 * `__proto__` key, which JSON allows (an entry field, a session key). Slower; used only
 * when the fast decoder throws.
 */
function decodeLenient(payload: Uint8Array): unknown {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  let pos = 0;
  const need = (n: number): void => {
    if (pos + n > buf.length) throw new ProtocolError("truncated msgpack payload");
  };
  const str = (n: number): string => {
    need(n);
    const text = buf.toString("utf8", pos, pos + n);
    pos += n;
    return text;
  };
  const array = (n: number, depth: number): unknown[] => {
    const out: unknown[] = [];
    for (let i = 0; i < n; i += 1) out.push(read(depth + 1));
    return out;
  };
  const map = (n: number, depth: number): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i += 1) {
      const key = read(depth + 1);
      if (typeof key !== "string" && typeof key !== "number") throw new ProtocolError("a map key is not a string");
      setOwn(out, String(key), read(depth + 1));
    }
    return out;
  };
  const read = (depth: number): unknown => {
    if (depth > 1000) throw new ProtocolError("msgpack nested too deep");
    need(1);
    const b = buf[pos++] as number;
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0xa0 && b <= 0xbf) return str(b & 0x1f);
    if (b >= 0x90 && b <= 0x9f) return array(b & 0x0f, depth);
    if (b >= 0x80 && b <= 0x8f) return map(b & 0x0f, depth);
    let v: number;
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xca: need(4); v = buf.readFloatBE(pos); pos += 4; return v;
      case 0xcb: need(8); v = buf.readDoubleBE(pos); pos += 8; return v;
      case 0xcc: need(1); v = buf.readUInt8(pos); pos += 1; return v;
      case 0xcd: need(2); v = buf.readUInt16BE(pos); pos += 2; return v;
      case 0xce: need(4); v = buf.readUInt32BE(pos); pos += 4; return v;
      case 0xcf: need(8); v = Number(buf.readBigUInt64BE(pos)); pos += 8; return v;
      case 0xd0: need(1); v = buf.readInt8(pos); pos += 1; return v;
      case 0xd1: need(2); v = buf.readInt16BE(pos); pos += 2; return v;
      case 0xd2: need(4); v = buf.readInt32BE(pos); pos += 4; return v;
      case 0xd3: need(8); v = Number(buf.readBigInt64BE(pos)); pos += 8; return v;
      case 0xd9: need(1); v = buf.readUInt8(pos); pos += 1; return str(v);
      case 0xda: need(2); v = buf.readUInt16BE(pos); pos += 2; return str(v);
      case 0xdb: need(4); v = buf.readUInt32BE(pos); pos += 4; return str(v);
      case 0xdc: need(2); v = buf.readUInt16BE(pos); pos += 2; return array(v, depth);
      case 0xdd: need(4); v = buf.readUInt32BE(pos); pos += 4; return array(v, depth);
      case 0xde: need(2); v = buf.readUInt16BE(pos); pos += 2; return map(v, depth);
      case 0xdf: need(4); v = buf.readUInt32BE(pos); pos += 4; return map(v, depth);
      default:
        throw new ProtocolError(`msgpack type 0x${b.toString(16)} is outside the protocol's value model`);
    }
  };
  const value = read(0);
  if (pos !== buf.length) throw new ProtocolError("extra bytes after a msgpack payload");
  return value;
}

/** Decode one reply payload. Throws {@link ProtocolError} when it is not a reply. */
export function decodeReply(payload: Uint8Array): Reply {
  let value: unknown;
  try {
    value = decoder.decode(payload);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    if (!reason.includes("__proto__")) throw new ProtocolError(`undecodable reply from the daemon: ${reason}`);
    value = decodeLenient(payload);
  }
  if (!isRecord(value)) throw new ProtocolError("a reply is not a msgpack map");
  const ok = value["ok"];
  if (typeof ok !== "boolean") throw new ProtocolError("a reply has no boolean `ok`");
  const id = optionalInteger(value["id"], "reply id");
  const seq = optionalInteger(value["seq"], "reply seq");
  if (ok) return { id, ok, result: value["result"] ?? null, error: null, seq };
  const body = value["error"];
  if (!isRecord(body) || typeof body["code"] !== "string") {
    throw new ProtocolError(`reply ${String(id)} has ok=false but no error body`);
  }
  const message = typeof body["message"] === "string" ? body["message"] : "";
  const oldestSeq = optionalInteger(body["oldest_seq"], "oldest_seq");
  return { id, ok, result: null, error: { code: body["code"], message, oldestSeq }, seq };
}

/** The server error a reply carries, or null. */
export function replyError(reply: Reply): ServerError | null {
  if (reply.error === null) return null;
  return serverErrorFor(reply.error.code, reply.error.message, reply.error.oldestSeq);
}

/**
 * Incremental frame splitter: feed chunks, get complete payloads. The announced length is
 * checked against `maxFrameBytes` as soon as the header is complete, before any of the
 * payload is buffered.
 */
export class FrameDecoder {
  maxFrameBytes: number;
  /** Bytes of an unfinished frame, kept as received (joined once the frame is complete). */
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The total length (header included) of the unfinished frame, once its header is known. */
  private needed = 0;

  constructor(maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Calls `onPayload` for every payload completed by `chunk`, in order. Throws
   *  {@link ProtocolError} for a frame over the limit (the payloads before it are delivered). */
  feed(chunk: Buffer, onPayload: (payload: Buffer) => void): void {
    let data = chunk;
    if (this.buffered > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.needed === 0 && this.buffered >= FRAME_HEADER_BYTES) {
        this.needed = this.frameLength(Buffer.concat(this.chunks), 0);
      }
      if (this.needed === 0 || this.buffered < this.needed) return;
      data = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [];
      this.buffered = 0;
      this.needed = 0;
    }
    let offset = 0;
    const available = data.length;
    while (available - offset >= FRAME_HEADER_BYTES) {
      const end = offset + this.frameLength(data, offset);
      if (available < end) break;
      onPayload(data.subarray(offset + FRAME_HEADER_BYTES, end));
      offset = end;
    }
    if (offset < available) {
      // Keep the unfinished frame (copied: the payloads delivered may be retained by
      // callers, the rest of a large chunk should not be).
      const rest = Buffer.from(data.subarray(offset));
      this.chunks = [rest];
      this.buffered = rest.length;
      this.needed = rest.length >= FRAME_HEADER_BYTES ? this.frameLength(rest, 0) : 0;
    }
  }

  private frameLength(data: Buffer, offset: number): number {
    const length = data.readUInt32BE(offset);
    if (length > this.maxFrameBytes) {
      throw new ProtocolError(
        `reply frame of ${length} bytes exceeds the daemon's max_reply_bytes (${this.maxFrameBytes})`,
      );
    }
    return FRAME_HEADER_BYTES + length;
  }
}
