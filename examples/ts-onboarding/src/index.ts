/**
 * Onboarding, in TypeScript: a new user gets a welcome email, and from then on we wait up to
 * three days for their first (named) project. If it comes they get a congratulation naming it;
 * if not, a nudge. Either way, a week after signing up they get a "your first week" email
 * counting the projects they created since. Everyone who creates three projects within thirty
 * days joins the `ts-active-creators` bucket, whose reaction thanks them once and marks their
 * contact.
 *
 * The wait starts right after the welcome, not after a sleep: a wait sees only the events
 * received after it began, so a project created before it would be missed. The sleep comes
 * after the branch, to the instant a week after the sign-up.
 *
 * Each `ctx` call is a durable step: after the wait and the sleep the host runs `onboarding`
 * again from the top, and every call already made answers from the journal.
 */
import { type Ctx, bucket, days, defineModule, event, journey, prop, template } from '@waymark/guest';

export async function onboarding(ctx: Ctx): Promise<void> {
  const name = ctx.person.string('name') ?? 'there';
  await ctx.sendEmail('onboarding-welcome', { vars: { name } });

  const project = await ctx.waitFor('project.created', {
    timeout: days(3),
    where: prop('name').exists(),
    label: 'their first project',
  });
  if (project) {
    const projectName = project.string('name') ?? 'your project';
    await ctx.sendEmail('onboarding-first-project', { vars: { name, project: projectName } });
    ctx.info(`${ctx.person.key} created ${projectName}`);
  } else {
    await ctx.sendEmail('onboarding-nudge', { vars: { name } });
    console.warn(`${ctx.person.key} has no project yet`); // console.* goes to the host's log too
  }

  await ctx.sleepUntil(ctx.trigger.occurredAt + days(7), 'a week after signing up');
  const projects = ctx.countEvents('project.created', { since: 'runStart' });
  await ctx.sendEmail('onboarding-first-week', { vars: { name, projects } });
}

export async function welcomeActiveCreator(ctx: Ctx): Promise<void> {
  await ctx.sendEmail('onboarding-active-creator', {
    vars: { projects: ctx.countEvents('project.created', { within: days(30) }) },
  });
  await ctx.updateContact({ active_creator: true });
}

export default defineModule({
  journeys: [
    journey({
      id: 'ts-onboarding',
      name: 'Onboarding (TypeScript)',
      trigger: 'user.signed_up',
      entryLimit: 'once',
      exitOn: ['account.deleted'],
      run: onboarding,
    }),
  ],
  buckets: [
    bucket({
      id: 'ts-active-creators',
      name: 'Active creators',
      description: 'Created at least three projects in the last 30 days',
      criteria: event('project.created').within(days(30)).atLeast(3),
      onEnter: { run: welcomeActiveCreator, firstEntryOnly: true },
    }),
  ],
  templates: [
    template({
      key: 'onboarding-welcome',
      subject: 'Welcome aboard, {{ name }}!',
      body: 'Hi {{ name }},\n\nYour account is ready. Create your first project to get going.\n',
    }),
    template({
      key: 'onboarding-first-project',
      subject: '{{ project }} is live',
      body: 'Nice work, {{ name }}: {{ project }} is your first project.\n',
    }),
    template({
      key: 'onboarding-nudge',
      subject: 'Need a hand getting started?',
      body: 'Hi {{ name }},\n\nYou have not created a project yet. Reply to this email and we will help.\n',
    }),
    template({
      key: 'onboarding-first-week',
      subject: 'Your first week, {{ name }}',
      body: 'Hi {{ name }},\n\nYou have been with us for a week. Projects created so far: {{ projects }}.\n',
    }),
    template({
      key: 'onboarding-active-creator',
      subject: 'You are on a roll',
      body: '{{ projects }} projects in a month. Thank you for building with us.\n',
    }),
  ],
});
