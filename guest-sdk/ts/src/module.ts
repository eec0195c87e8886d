/**
 * Declaring a module: journeys with their handlers, buckets with their reactions, email
 * templates. {@link defineModule} checks the declarations and builds the manifest the host
 * reads; `waymark build` turns the module (the default export of `src/index.ts`) into a
 * component.
 */
import { Criteria } from './criteria.js';
import type { Handler } from './ctx.js';
import { type Duration, checkDuration } from './duration.js';

/** How often one person may enter (a person has at most one live run of a journey at a time). */
export type EntryLimit = 'once' | 'unlimited' | { oncePer: Duration };

/** An event that ends a person's live runs: its name, or its name and a condition on its properties. */
export type ExitRule = string | { event: string; where?: Criteria };

export interface JourneyOptions {
  /** Unique across the tenant's modules. */
  id: string;
  /** Display name; defaults to the id. */
  name?: string;
  /** The event that starts a run. */
  trigger: string;
  /** A condition on the trigger event's properties (property conditions only). */
  where?: Criteria;
  /** Events that end the person's live runs of this journey. */
  exitOn?: ExitRule[];
  /** Default `'once'`. */
  entryLimit?: EntryLimit;
  /** Default true; a disabled journey starts no new runs. */
  enabled?: boolean;
  /** The least time between two emails this journey sends to one address. */
  suppress?: Duration;
  /** The handler, run for one person from the top on every activation. */
  run: Handler;
}

export interface Journey extends Readonly<JourneyOptions> {
  readonly kind: 'journey';
}

/** Declares a journey. */
export function journey(options: JourneyOptions): Journey {
  return Object.freeze({ ...options, kind: 'journey' as const });
}

/** The reasons a person leaves a bucket. */
export type LeaveReason = 'criteria' | 'maxDwell' | 'manual';
export const LEAVE_REASONS: readonly LeaveReason[] = ['criteria', 'maxDwell', 'manual'];

export interface EnterReaction {
  run: Handler;
  /** Run only on the person's first entry. */
  firstEntryOnly?: boolean;
  /** Events that end the reaction's live run (e.g. after a sleep). */
  exitOn?: ExitRule[];
  /** End the reaction's live run when the person leaves the bucket. */
  untilLeft?: boolean;
}

export interface LeaveReaction {
  run: Handler;
  /** Run only for these reasons; every reason when left out. */
  reasons?: LeaveReason[];
}

/** A reaction once per membership `after` this long, or `every` this long while it lasts. */
export type DwellReaction = { run: Handler } & ({ after: Duration; every?: never } | { every: Duration; after?: never });

export interface BucketOptions {
  /** Unique across the tenant's modules; no `:` or whitespace. */
  id: string;
  name?: string;
  description?: string;
  /** Membership criteria; leave out for a manual bucket (`manual: true`). */
  criteria?: Criteria;
  /** Membership changes only through the API. */
  manual?: boolean;
  enabled?: boolean;
  /** Whether the clock alone can change membership; inferred when left out. */
  timeBased?: boolean;
  /** Re-check a member for leaving as soon as possible after they join. */
  fastExpiry?: boolean;
  /** A leave waits until the membership is at least this old. */
  minDwell?: Duration;
  /** Members leave this long after they entered. */
  maxDwell?: Duration;
  /** How often one person's entry emits `bucket:entered`. Default `'unlimited'`. */
  entryLimit?: EntryLimit;
  onEnter?: Handler | EnterReaction;
  onLeave?: Handler | LeaveReaction;
  onDwell?: DwellReaction[];
}

export interface Bucket extends Readonly<BucketOptions> {
  readonly kind: 'bucket';
}

/** Declares a bucket. */
export function bucket(options: BucketOptions): Bucket {
  return Object.freeze({ ...options, kind: 'bucket' as const });
}

export interface TemplateOptions {
  key: string;
  /** A minijinja template, like `body`. */
  subject: string;
  /** Plain-text body. */
  body: string;
  /** HTML body (autoescaped); with it the email is multipart. */
  html?: string;
}

export interface Template extends Readonly<TemplateOptions> {
  readonly kind: 'template';
}

/** Declares an email template shipped with the module. */
export function template(options: TemplateOptions): Template {
  return Object.freeze({ ...options, kind: 'template' as const });
}

// ---- The manifest, as plain data (the component binding converts it to WIT shapes) ----

export interface ExitRuleDef {
  event: string;
  where?: string;
}

export interface JourneyDef {
  id: string;
  name: string;
  trigger: string;
  triggerWhere?: string;
  exitOn: ExitRuleDef[];
  entryLimit: EntryLimit;
  enabled: boolean;
  suppress: Duration;
}

export type ReactionOn =
  | { enter: { firstEntryOnly: boolean } }
  | { leave: { reasons?: string[] } }
  | { dwell: { afterMs?: Duration; everyMs?: Duration } };

export interface ReactionDef {
  journeyId: string;
  handler: string;
  on: ReactionOn;
}

export interface BucketDef {
  id: string;
  name: string;
  description?: string;
  enabled: boolean;
  kind: 'computed' | 'manual';
  criteria?: string;
  timeBased?: boolean;
  fastExpiry: boolean;
  minDwellMs?: Duration;
  maxDwellMs?: Duration;
  entryLimit: EntryLimit;
  reactions: ReactionDef[];
}

export interface Manifest {
  journeys: JourneyDef[];
  templates: TemplateOptions[];
  buckets: BucketDef[];
}

/** Longest id, name or trigger the host accepts. */
const MAX_ID_LEN = 200;

/** A module's declarations, checked, with their manifest and handlers. */
export class Module {
  readonly manifest: Manifest;
  private readonly handlers = new Map<string, Handler>();

  constructor(
    readonly journeys: readonly Journey[],
    readonly buckets: readonly Bucket[],
    readonly templates: readonly Template[],
  ) {
    const problems: string[] = [];
    this.manifest = buildManifest(this, problems);
    if (problems.length > 0) {
      throw new ModuleError(problems);
    }
  }

  /** @internal */
  addHandler(id: string, handler: Handler): void {
    this.handlers.set(id, handler);
  }

  /** The handler the host runs for journey (or reaction) `id`. */
  handler(id: string): Handler | undefined {
    return this.handlers.get(id);
  }

  /** Every runnable journey id: journeys and reaction journeys. */
  handlerIds(): string[] {
    return [...this.handlers.keys()];
  }

  /** Why `id` cannot be run. */
  unknownHandler(id: string): string {
    const known = this.handlerIds().map((k) => JSON.stringify(k));
    return known.length === 0
      ? `unknown handler ${JSON.stringify(id)}: this module declares no journeys`
      : `unknown handler ${JSON.stringify(id)}: this module's journeys are ${known.join(', ')}`;
  }
}

/** A module whose declarations are not valid; `problems` lists each, naming the field. */
export class ModuleError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid waymark module:\n${problems.join('\n')}`);
    this.name = 'ModuleError';
  }
}

export interface ModuleOptions {
  journeys?: Journey[];
  buckets?: Bucket[];
  templates?: Template[];
}

/**
 * Declares the module: export it as the default export of `src/index.ts`.
 *
 * ```ts
 * export default defineModule({
 *   journeys: [journey({ id: 'welcome', trigger: 'user.signed_up', run: welcome })],
 *   templates: [template({ key: 'welcome', subject: 'Welcome!', body: 'Hi {{ name }}' })],
 * });
 * ```
 *
 * Throws a {@link ModuleError} listing every problem (empty ids, duplicate ids, a bucket with
 * no criteria, …). What only the host can check — that templates parse, that criteria make
 * sense, that ids are unique across the tenant's other modules — it checks on deploy.
 */
export function defineModule(options: ModuleOptions): Module {
  return new Module(options.journeys ?? [], options.buckets ?? [], options.templates ?? []);
}

/** `bucket-<id>-on-enter` etc.: the reaction journeys' ids, as the Rust SDK names them. */
export const reactionIds = {
  enter: (bucketId: string) => `bucket-${bucketId}-on-enter`,
  leave: (bucketId: string) => `bucket-${bucketId}-on-leave`,
  dwell: (bucketId: string, schedule: { after?: Duration; every?: Duration }) =>
    schedule.after !== undefined
      ? `bucket-${bucketId}-on-dwell-after-${schedule.after}`
      : `bucket-${bucketId}-on-dwell-every-${schedule.every}`,
};

function checkEntryLimit(limit: EntryLimit, at: string, problems: string[]): EntryLimit {
  if (limit === 'once' || limit === 'unlimited') return limit;
  if (limit !== null && typeof limit === 'object' && 'oncePer' in limit) {
    try {
      const period = checkDuration(limit.oncePer, `${at}: entryLimit.oncePer`);
      if (period === 0) problems.push(`${at}: entryLimit oncePer needs a period above zero`);
    } catch (e) {
      problems.push((e as Error).message);
    }
    return limit;
  }
  problems.push(`${at}: entryLimit must be 'once', 'unlimited' or { oncePer: duration }`);
  return 'unlimited';
}

function checkName(value: unknown, field: string, at: string, problems: string[]): string {
  if (typeof value !== 'string' || value.trim() === '') {
    problems.push(`${at}: ${field} is empty`);
    return '';
  }
  if (value.length > MAX_ID_LEN) problems.push(`${at}: ${field} is longer than ${MAX_ID_LEN} characters`);
  return value;
}

function checkHandler(handler: unknown, what: string, problems: string[]): handler is Handler {
  if (typeof handler !== 'function') {
    problems.push(`${what}: the handler is not a function`);
    return false;
  }
  return true;
}

function criteriaText(value: unknown, what: string, problems: string[]): string | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof Criteria)) {
    problems.push(`${what} is not a condition (build it with prop(..), event(..), all(..), …)`);
    return undefined;
  }
  return value.toString();
}

function exitRules(rules: readonly ExitRule[] | undefined, at: string, problems: string[]): ExitRuleDef[] {
  return (rules ?? []).map((rule, r) => {
    const { event, where } = typeof rule === 'string' ? { event: rule, where: undefined } : rule;
    if (typeof event !== 'string' || event.trim() === '') problems.push(`${at}: exitOn[${r}] event name is empty`);
    const whereText = criteriaText(where, `${at}: exitOn[${r}].where`, problems);
    return whereText === undefined ? { event } : { event, where: whereText };
  });
}

function optionalDuration(value: Duration | undefined, what: string, problems: string[]): Duration | undefined {
  if (value === undefined) return undefined;
  try {
    return checkDuration(value, what);
  } catch (e) {
    problems.push((e as Error).message);
    return undefined;
  }
}

/**
 * Calls `check` for each declaration of `list` made with its declaring function (`journey`,
 * `bucket`, `template`), with where it is for messages (`journeys[0] ("welcome")`); any other
 * value is a problem.
 */
function eachDeclared<T extends { kind: string }>(
  list: readonly T[],
  section: string,
  kind: T['kind'],
  name: (declared: T) => unknown,
  problems: string[],
  check: (declared: T, at: string) => void,
): void {
  list.forEach((declared, i) => {
    if (declared?.kind !== kind) {
      problems.push(`${section}[${i}] is not a ${kind} (declare it with ${kind}({ .. }))`);
      return;
    }
    check(declared, `${section}[${i}] (${JSON.stringify(name(declared))})`);
  });
}

function buildManifest(module: Module, problems: string[]): Manifest {
  const manifest: Manifest = { journeys: [], templates: [], buckets: [] };
  if (module.journeys.length === 0 && module.buckets.length === 0) {
    problems.push('a module must declare at least one journey or bucket');
  }
  const ids = new Set<string>();
  const claim = (id: string, at: string) => {
    if (ids.has(id)) problems.push(`${at}: journey id ${JSON.stringify(id)} is declared more than once`);
    ids.add(id);
  };

  eachDeclared(module.journeys, 'journeys', 'journey', (j) => j.id, problems, (j, at) => {
    const id = checkName(j.id, 'id', at, problems);
    checkName(j.trigger, 'trigger', at, problems);
    const name = j.name === undefined ? id : checkName(j.name, 'name', at, problems);
    claim(id, at);
    if (checkHandler(j.run, at, problems)) module.addHandler(id, j.run);
    const def: JourneyDef = {
      id,
      name,
      trigger: j.trigger,
      exitOn: exitRules(j.exitOn, at, problems),
      entryLimit: checkEntryLimit(j.entryLimit ?? 'once', at, problems),
      enabled: j.enabled ?? true,
      suppress: optionalDuration(j.suppress, `${at}: suppress`, problems) ?? 0,
    };
    const where = criteriaText(j.where, `${at}: where`, problems);
    if (where !== undefined) def.triggerWhere = where;
    manifest.journeys.push(def);
  });

  const bucketIds = new Set<string>();
  eachDeclared(module.buckets, 'buckets', 'bucket', (b) => b.id, problems, (b, at) => {
    const id = checkName(b.id, 'id', at, problems);
    if (/[:\s]/.test(id)) problems.push(`${at}: id must not contain ':' or whitespace`);
    if (id !== '' && bucketIds.has(id)) problems.push(`${at}: id is declared more than once`);
    bucketIds.add(id);
    const name = b.name === undefined ? id : checkName(b.name, 'name', at, problems);
    const manual = b.manual ?? false;
    if (manual && b.criteria !== undefined) problems.push(`${at}: a manual bucket must not have criteria`);
    if (!manual && b.criteria === undefined) {
      problems.push(`${at}: criteria are required for a computed bucket; add criteria or declare it manual: true`);
    }
    const minDwellMs = optionalDuration(b.minDwell, `${at}: minDwell`, problems);
    const maxDwellMs = optionalDuration(b.maxDwell, `${at}: maxDwell`, problems);
    if (minDwellMs === 0) problems.push(`${at}: minDwell must be above zero`);
    if (maxDwellMs === 0) problems.push(`${at}: maxDwell must be above zero`);
    if (minDwellMs !== undefined && maxDwellMs !== undefined && maxDwellMs < minDwellMs) {
      problems.push(`${at}: maxDwell must not be below minDwell`);
    }
    const enabled = b.enabled ?? true;
    const reactions: ReactionDef[] = [];

    if (b.onEnter !== undefined) {
      const reaction: EnterReaction = typeof b.onEnter === 'function' ? { run: b.onEnter } : b.onEnter;
      const journeyId = reactionIds.enter(id);
      claim(journeyId, at);
      if (checkHandler(reaction.run, `${at}: onEnter`, problems)) module.addHandler(journeyId, reaction.run);
      reactions.push({ journeyId, handler: journeyId, on: { enter: { firstEntryOnly: reaction.firstEntryOnly ?? false } } });
      const exitOn = exitRules(reaction.exitOn, `${at}: onEnter`, problems);
      if (reaction.untilLeft) exitOn.push({ event: `bucket:left:${id}` });
      if (exitOn.length > 0) {
        // A journey of the reaction's id declares the reaction's exit rules.
        manifest.journeys.push({
          id: journeyId,
          name: `${name} \u2014 on enter`,
          trigger: `bucket:entered:${id}`,
          exitOn,
          entryLimit: 'unlimited',
          enabled,
          suppress: 0,
        });
      }
    }
    if (b.onLeave !== undefined) {
      const reaction: LeaveReaction = typeof b.onLeave === 'function' ? { run: b.onLeave } : b.onLeave;
      const journeyId = reactionIds.leave(id);
      claim(journeyId, at);
      if (checkHandler(reaction.run, `${at}: onLeave`, problems)) module.addHandler(journeyId, reaction.run);
      if (reaction.reasons !== undefined) {
        if (reaction.reasons.length === 0) problems.push(`${at}: onLeave reasons is empty; leave it out for every reason`);
        for (const r of reaction.reasons) {
          if (!LEAVE_REASONS.includes(r)) {
            problems.push(`${at}: leave reason ${JSON.stringify(r)} is not a leave reason (one of ${LEAVE_REASONS.join(', ')})`);
          }
        }
      }
      const leave = reaction.reasons === undefined ? {} : { reasons: [...reaction.reasons] };
      reactions.push({ journeyId, handler: journeyId, on: { leave } });
    }
    (b.onDwell ?? []).forEach((reaction, d) => {
      const where = `${at}: onDwell[${d}]`;
      const after = optionalDuration(reaction.after, `${where}.after`, problems);
      const every = optionalDuration(reaction.every, `${where}.every`, problems);
      if ((after === undefined) === (every === undefined)) {
        problems.push(`${where}: give exactly one of after or every`);
        return;
      }
      if ((after ?? every) === 0) problems.push(`${where}: the schedule is zero`);
      const journeyId = reactionIds.dwell(id, { after, every });
      claim(journeyId, where);
      if (checkHandler(reaction.run, where, problems)) module.addHandler(journeyId, reaction.run);
      const dwell = after !== undefined ? { afterMs: after } : { everyMs: every as Duration };
      reactions.push({ journeyId, handler: journeyId, on: { dwell } });
    });

    const def: BucketDef = {
      id,
      name,
      enabled,
      kind: manual ? 'manual' : 'computed',
      fastExpiry: b.fastExpiry ?? false,
      entryLimit: checkEntryLimit(b.entryLimit ?? 'unlimited', at, problems),
      reactions,
    };
    if (b.description !== undefined) def.description = b.description;
    const criteria = criteriaText(b.criteria, `${at}: criteria`, problems);
    if (criteria !== undefined) def.criteria = criteria;
    if (b.timeBased !== undefined) def.timeBased = b.timeBased;
    if (minDwellMs !== undefined) def.minDwellMs = minDwellMs;
    if (maxDwellMs !== undefined) def.maxDwellMs = maxDwellMs;
    manifest.buckets.push(def);
  });

  const keys = new Set<string>();
  eachDeclared(module.templates, 'templates', 'template', (t) => t.key, problems, (t, at) => {
    const key = checkName(t.key, 'key', at, problems);
    if (key !== '' && keys.has(key)) problems.push(`${at}: key is declared more than once`);
    keys.add(key);
    if (typeof t.subject !== 'string' || t.subject.trim() === '') problems.push(`${at}: subject is empty`);
    if (typeof t.body !== 'string') problems.push(`${at}: body must be a string`);
    const def: TemplateOptions = { key, subject: t.subject, body: t.body };
    if (t.html !== undefined) def.html = t.html;
    manifest.templates.push(def);
  });
  return manifest;
}
