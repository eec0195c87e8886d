/**
 * Durations are plain numbers of milliseconds: `days(2)`, `hours(12) + minutes(30)`, or `90_000`.
 * The helpers only make them readable; any non-negative integer number of milliseconds works.
 */
export type Duration = number;

/** Milliseconds since the Unix epoch, on the host's clock. */
export type Timestamp = number;

export const millis = (n: number): Duration => n;
export const seconds = (n: number): Duration => n * 1_000;
export const minutes = (n: number): Duration => n * 60_000;
export const hours = (n: number): Duration => n * 3_600_000;
export const days = (n: number): Duration => n * 86_400_000;
export const weeks = (n: number): Duration => n * 604_800_000;

/**
 * Checks that `value` is a duration the host accepts (a whole, non-negative number of
 * milliseconds no larger than `Number.MAX_SAFE_INTEGER`) and returns it; `what` names it in
 * the error.
 */
export function checkDuration(value: unknown, what: string): Duration {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(
      `${what} must be a whole, non-negative number of milliseconds (e.g. days(2)), got ${describeValue(value)}`,
    );
  }
  return value;
}

/** Like {@link checkDuration} for an instant (may be negative: before 1970). */
export function checkTimestamp(value: unknown, what: string): Timestamp {
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isSafeInteger(ms)) {
    throw new TypeError(
      `${what} must be a Date or whole milliseconds since the Unix epoch, got ${describeValue(value)}`,
    );
  }
  return ms;
}

export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n (a BigInt: pass a number)`;
  return String(value);
}
