/**
 * Session keys as the clawdbot gateway (2026-01-10, `src/config/sessions.ts` and
 * `src/routing/session-key.ts`) derived them: the same rules the daemon's `resolve` applies
 * (PROTOCOL.md §6.7 step 1) and the Python client's `sessiond_client.keys` reproduces.
 * Pure: no I/O. Written from the Python port and the protocol text.
 */

export type SessionScope = "per-sender" | "global";

/** The message fields key derivation reads (the gateway's MsgContext, loosely). */
export interface MsgContextLike {
  From?: string;
  To?: string;
  ChatType?: string;
  Provider?: string;
  SessionKey?: string;
  Body?: string;
  RawBody?: string;
  CommandBody?: string;
  GroupSubject?: string;
  GroupRoom?: string;
  GroupSpace?: string;
  ThreadLabel?: string;
  MessageThreadId?: string | number;
  [field: string]: unknown;
}

export interface GroupKeyResolution {
  key: string;
  legacyKey?: string;
  provider?: string;
  id?: string;
  chatType?: "group" | "room";
}

export const DEFAULT_AGENT_ID = "main";
export const DEFAULT_MAIN_KEY = "main";
export const DEFAULT_RESET_TRIGGER = "/new";
export const DEFAULT_RESET_TRIGGERS: readonly string[] = ["/new", "/reset"];
export const DEFAULT_IDLE_MINUTES = 60;

/** Providers recognised as the first segment of a group `From` (`slack:channel:C1`). */
export const GROUP_PROVIDERS: ReadonlySet<string> = new Set([
  "whatsapp",
  "telegram",
  "discord",
  "slack",
  "signal",
  "imessage",
  "webchat",
]);

const VALID_AGENT_ID = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$/;
const INVALID_AGENT_ID_CHARS = /[^a-z0-9_-]+/g;

/** Whether `value` is a valid wire `agent` (PROTOCOL.md §5). */
export function isValidAgentId(value: string): boolean {
  return VALID_AGENT_ID.test(value);
}

/** A filesystem-safe agent id: valid ids are kept (case too), others lowercased, runs of
 *  other characters replaced by `-`, trimmed of `-`, at most 64 characters; blank → main. */
export function normalizeAgentId(value?: string | null): string {
  const trimmed = (value ?? "").trim();
  if (!trimmed) return DEFAULT_AGENT_ID;
  if (VALID_AGENT_ID.test(trimmed)) return trimmed;
  const cleaned = trimmed.toLowerCase().replace(INVALID_AGENT_ID_CHARS, "-").replace(/^-+|-+$/g, "");
  return cleaned.slice(0, 64) || DEFAULT_AGENT_ID;
}

/** The trimmed main key (case kept), or `main` when blank. */
export function normalizeMainKey(value?: string | null): string {
  return (value ?? "").trim() || DEFAULT_MAIN_KEY;
}

/** Split `agent:<id>:<rest>`; null for any other shape (empty segments are dropped). */
export function parseAgentSessionKey(sessionKey?: string | null): { agentId: string; rest: string } | null {
  const raw = (sessionKey ?? "").trim();
  if (!raw) return null;
  const parts = raw.split(":").filter(Boolean);
  if (parts.length < 3 || parts[0] !== "agent") return null;
  const agentId = (parts[1] ?? "").trim();
  const rest = parts.slice(2).join(":");
  if (!agentId || !rest) return null;
  return { agentId, rest };
}

/** The normalised agent of `agent:<id>:...` keys, else `main`. */
export function resolveAgentIdFromSessionKey(sessionKey?: string | null): string {
  const parsed = parseAgentSessionKey(sessionKey);
  return normalizeAgentId(parsed === null ? DEFAULT_AGENT_ID : parsed.agentId);
}

export function buildAgentMainSessionKey(params: { agentId: string; mainKey?: string | null }): string {
  return `agent:${normalizeAgentId(params.agentId)}:${normalizeMainKey(params.mainKey)}`;
}

/** Loose E.164 (the 2026-01-10 rule): drop one `whatsapp:` prefix, keep digits and `+`,
 *  lead with `+`. */
export function normalizeE164(number: string): string {
  const withoutPrefix = number.startsWith("whatsapp:") ? number.slice("whatsapp:".length) : number;
  const digits = withoutPrefix.trim().replace(/[^\d+]/g, "");
  return `+${digits.startsWith("+") ? digits.slice(1) : digits}`;
}

const GROUP_KINDS = ["group", "channel"];

function parseGroupParts(parts: string[]): [string | undefined, string | undefined, string] {
  const [first, second] = parts;
  if (parts.length >= 2 && first !== undefined && GROUP_PROVIDERS.has(first)) {
    if (parts.length === 2) return [first, undefined, second ?? ""];
    if (second !== undefined && GROUP_KINDS.includes(second)) return [first, second, parts.slice(2).join(":")];
    return [first, undefined, parts.slice(1).join(":")];
  }
  if (parts.length >= 2 && first !== undefined && GROUP_KINDS.includes(first)) {
    return [undefined, first, parts.slice(1).join(":")];
  }
  return [undefined, undefined, ""];
}

/** The group session of a message context, or null for a direct message. */
export function resolveGroupSessionKey(ctx: MsgContextLike): GroupKeyResolution | null {
  const from = typeof ctx.From === "string" ? ctx.From.trim() : "";
  if (!from) return null;
  const chatType = typeof ctx.ChatType === "string" ? ctx.ChatType.trim().toLowerCase() : undefined;
  const isGroup =
    chatType === "group" ||
    from.startsWith("group:") ||
    from.includes("@g.us") ||
    from.includes(":group:") ||
    from.includes(":channel:");
  if (!isGroup) return null;
  const providerHint = typeof ctx.Provider === "string" ? ctx.Provider.trim().toLowerCase() : undefined;
  const legacyPrefix = from.startsWith("group:");
  const raw = legacyPrefix ? from.slice("group:".length).trim() : from;
  let provider: string | undefined;
  let kind: string | undefined;
  let id: string;
  if (legacyPrefix) {
    const legacyParts = raw.split(":").filter(Boolean);
    if (legacyParts.length > 1) [provider, kind, id] = parseGroupParts(legacyParts);
    else id = raw;
  } else if (from.includes("@g.us") && !from.includes(":")) {
    id = from;
  } else {
    [provider, kind, id] = parseGroupParts(from.split(":").filter(Boolean));
    id = id || raw || from;
  }
  const resolvedProvider = provider ?? providerHint;
  if (!resolvedProvider) {
    const legacy = legacyPrefix ? `group:${raw}` : `group:${from}`;
    return { key: legacy, id: raw || from, legacyKey: legacy, chatType: "group" };
  }
  const finalId = id || raw || from;
  const resolvedKind = kind === "channel" ? "channel" : "group";
  const result: GroupKeyResolution = {
    key: `${resolvedProvider}:${resolvedKind}:${finalId}`,
    id: finalId,
    provider: resolvedProvider,
    chatType: resolvedKind === "channel" ? "room" : "group",
  };
  if (legacyPrefix || from.includes("@g.us")) result.legacyKey = `group:${finalId}`;
  return result;
}

/** The raw bucket of a message: `global`, a group key, an E.164 sender or `unknown`. */
export function deriveSessionKey(scope: SessionScope, ctx: MsgContextLike): string {
  if (scope === "global") return "global";
  const group = resolveGroupSessionKey(ctx);
  if (group !== null) return group.key;
  return ctx.From ? normalizeE164(ctx.From) : "unknown";
}

/**
 * The store key of a message, as the gateway computed it: an explicit `SessionKey` wins;
 * direct chats share `agent:main:<mainKey>`; groups get `agent:main:<group key>`. The
 * daemon's `resolve` derives the same key (for the `main` agent), atomically with the
 * session itself; use this when you need the key without touching the session.
 */
export function resolveSessionKey(scope: SessionScope, ctx: MsgContextLike, mainKey?: string | null): string {
  const explicit = typeof ctx.SessionKey === "string" ? ctx.SessionKey.trim() : "";
  if (explicit) return explicit;
  const raw = deriveSessionKey(scope, ctx);
  if (scope === "global") return raw;
  if (raw.startsWith("group:") || raw.includes(":group:") || raw.includes(":channel:")) {
    return `agent:${DEFAULT_AGENT_ID}:${raw}`;
  }
  return buildAgentMainSessionKey({ agentId: DEFAULT_AGENT_ID, mainKey: normalizeMainKey(mainKey) });
}
