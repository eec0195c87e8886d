/**
 * Text helpers that reproduce how the host writes things, so the kit's messages read like the
 * host's: JSON as serde_json prints a `Value` (object keys sorted, no whitespace), durations as
 * `humantime` formats them, instants as RFC 3339 with milliseconds.
 *
 * @internal
 */
import type { Json } from '../criteria.js';
import type { Duration, Timestamp } from '../duration.js';

/**
 * `value` as the host's journal prints a request: compact JSON with object keys in ascending
 * order at every level (serde_json's map is ordered), `undefined` members left out.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isFinite(value) ? JSON.stringify(value) : 'null';
  if (typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  if (typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const keys = Object.keys(record)
      .filter((k) => record[k] !== undefined)
      .sort(compareUtf16);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`).join(',')}}`;
  }
  return 'null';
}

function compareUtf16(a: string, b: string): number {
  // serde_json's BTreeMap orders keys by their UTF-8 bytes; for the ASCII keys the host's
  // requests use, that is the code-unit order.
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A deep copy of a JSON value, with keys as given and `undefined` members left out. */
export function cloneJson<T extends Json>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** The length of `text` in UTF-8 bytes, as the host measures an import's payload. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

/**
 * A duration as the host writes one in messages (the `humantime` crate): `30days`,
 * `1month 13h 26m 24s`, `10years`, `0s`. A year is 365.25 days and a month 30.44 days.
 */
export function formatDuration(ms: Duration): string {
  if (ms <= 0) return '0s';
  const secs = Math.floor(ms / 1000);
  const millis = ms % 1000;
  const years = Math.floor(secs / 31_557_600);
  const ydays = secs % 31_557_600;
  const months = Math.floor(ydays / 2_630_016);
  const mdays = ydays % 2_630_016;
  const days = Math.floor(mdays / 86_400);
  const daySecs = mdays % 86_400;
  const parts: string[] = [];
  const plural = (n: number, name: string) => {
    if (n > 0) parts.push(`${n}${name}${n > 1 ? 's' : ''}`);
  };
  const item = (n: number, name: string) => {
    if (n > 0) parts.push(`${n}${name}`);
  };
  plural(years, 'year');
  plural(months, 'month');
  plural(days, 'day');
  item(Math.floor(daySecs / 3600), 'h');
  item(Math.floor((daySecs % 3600) / 60), 'm');
  item(daySecs % 60, 's');
  item(millis, 'ms');
  return parts.join(' ');
}

/** An instant as RFC 3339 with milliseconds in UTC (`2026-01-05T09:00:00.000Z`), as the host writes one. */
export function formatInstant(at: Timestamp): string {
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? String(at) : date.toISOString();
}

/** A string as Rust's `{:?}` writes it, near enough: in double quotes, escaped. */
export function quoted(text: string): string {
  return JSON.stringify(text);
}

/** An email address as the host stores one: trimmed and lower-cased; `null` when empty. */
export function normalizeEmail(raw: string): string | null {
  const email = raw.trim().toLowerCase();
  return email === '' ? null : email;
}

/** Freezes `value` and everything in it, so what a test reads cannot change what the kit keeps. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
