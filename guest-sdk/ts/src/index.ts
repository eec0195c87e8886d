/**
 * # @waymark/guest — write Waymark journeys in TypeScript
 *
 * A module declares journeys (durable, per-person programs started by an event), buckets
 * (named sets of contacts the host keeps up to date, with reactions when someone enters,
 * leaves or stays) and the email templates they send. `waymark build` compiles the module —
 * the default export of `src/index.ts` — into a WebAssembly component.
 *
 * ```ts
 * import { defineModule, journey, template, days, type Ctx } from '@waymark/guest';
 *
 * async function welcome(ctx: Ctx) {
 *   await ctx.sendEmail('welcome');
 *   await ctx.sleep(days(2), 'two days later');
 *   const plan = ctx.person.string('plan') ?? 'free';
 *   await ctx.sendEmail(ctx.random() < 0.5 ? 'tips-a' : 'tips-b', { vars: { plan } });
 * }
 *
 * export default defineModule({
 *   journeys: [journey({ id: 'welcome', trigger: 'user.signed_up', run: welcome })],
 *   templates: [template({ key: 'welcome', subject: 'Welcome!', body: 'Hi {{ name }}' }), ...],
 * });
 * ```
 *
 * Every `ctx` call except logging is a durable, journaled step: after a sleep the host runs
 * the handler again from the top and each call already made answers from the journal. Tests
 * run handlers in node with `@waymark/guest/testing`.
 */
export { Criteria, Prop, EventCount, all, any, not, prop, event } from './criteria.js';
export type { CriteriaJson, Json, PropertyOperator, CountOperator } from './criteria.js';
export { type Duration, type Timestamp, millis, seconds, minutes, hours, days, weeks } from './duration.js';
export {
  Ctx,
  Person,
  Event,
  BucketReader,
  type Handler,
  type Properties,
  type Member,
  type MemberPage,
  type JourneyHistory,
  type EmailHistory,
  type EmailOptions,
  type WaitOptions,
  type CountOptions,
} from './ctx.js';
export { HostError, type LogLevel } from './host.js';
export {
  defineModule,
  journey,
  bucket,
  template,
  reactionIds,
  Module,
  ModuleError,
  LEAVE_REASONS,
  type ModuleOptions,
  type Journey,
  type JourneyOptions,
  type Bucket,
  type BucketOptions,
  type Template,
  type TemplateOptions,
  type EntryLimit,
  type ExitRule,
  type EnterReaction,
  type LeaveReaction,
  type LeaveReason,
  type DwellReaction,
  type Manifest,
} from './module.js';
