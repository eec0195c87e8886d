/**
 * Test guest in TypeScript: how the SDK behaves at the edges, on the real host.
 *
 * - `ts-steps` (trigger `ts.steps`): an async handler that checkpoints, sends an email, sleeps
 *   an hour and sends another; `ts-steps-reordered` sleeps before the email (replaying the
 *   first one's journal with it is a divergence at the email step).
 * - `ts-throws` (`ts.throw`): sends an email, then throws an Error from a nested function.
 * - `ts-spins` (`ts.spin`): loops forever (the CPU budget ends it).
 * - `ts-grows` (`ts.grow`): allocates until the memory cap ends it.
 * - `ts-burst` (`ts.burst`): reads the clock and checkpoints, then completes: one activation
 *   per run, for the TypeScript activation benchmark.
 */
import { type Ctx, defineModule, hours, journey, template } from '@waymark/guest';

async function steps(ctx: Ctx): Promise<void> {
  console.log('steps for', ctx.person.key, { trigger: ctx.trigger.name }); // to the host's log
  ctx.checkpoint('start');
  await ctx.sendEmail('ts-step', { vars: { n: 1 } });
  await ctx.sleep(hours(1), 'an hour');
  await ctx.sendEmail('ts-step', { vars: { n: 2 } });
}

async function reordered(ctx: Ctx): Promise<void> {
  ctx.checkpoint('start');
  await ctx.sleep(hours(1), 'an hour');
  await ctx.sendEmail('ts-step', { vars: { n: 1 } });
}

function chargeCard(key: string): never {
  throw new Error(`card declined for ${key}`);
}

async function throws(ctx: Ctx): Promise<void> {
  await ctx.sendEmail('ts-step', { vars: { n: 0 } });
  chargeCard(ctx.person.key);
}

function burst(ctx: Ctx): void {
  ctx.checkpoint(`burst at ${ctx.now()}`);
}

function spins(): void {
  let n = 0;
  for (;;) n = (n + 1) % 7;
}

function grows(): void {
  const hoard: Uint8Array[] = [];
  for (;;) hoard.push(new Uint8Array(8 << 20));
}

export default defineModule({
  journeys: [
    journey({ id: 'ts-steps', trigger: 'ts.steps', entryLimit: 'unlimited', run: steps }),
    journey({ id: 'ts-steps-reordered', trigger: 'ts.steps-reordered', entryLimit: 'unlimited', run: reordered }),
    journey({ id: 'ts-throws', trigger: 'ts.throw', entryLimit: 'unlimited', run: throws }),
    journey({ id: 'ts-spins', trigger: 'ts.spin', entryLimit: 'unlimited', run: spins }),
    journey({ id: 'ts-burst', trigger: 'ts.burst', entryLimit: 'unlimited', run: burst }),
    journey({ id: 'ts-grows', trigger: 'ts.grow', entryLimit: 'unlimited', run: grows }),
  ],
  templates: [template({ key: 'ts-step', subject: 'Step {{ n }}', body: 'Step {{ n }} for {{ key }}.' })],
});
