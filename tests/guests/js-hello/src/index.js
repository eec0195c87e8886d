// Test guest in plain JavaScript: proves the journey-module world works from componentize-js.
//
// Journey `js-hello` (trigger `js.hello`, unlimited): reads the clock, sends the `js-hello`
// template to the person, logs, and completes.
//
// WIT -> JS mapping (componentize-js): kebab-case names become camelCase (`send-email` ->
// `sendEmail`, `properties-json` -> `propertiesJson`); u64/s64 are BigInt; option<T> is
// T | undefined; a variant is { tag: 'kebab-name', val }; an enum is its kebab-case string;
// an import returning result<T, E> returns T or throws (the error in `.payload`); an export
// returning result<_, string> returns normally for ok and throws a string for err.
import { log, now, sendEmail } from 'waymark:journey/context@0.1.0';

const JOURNEY = 'js-hello';

export function describe() {
  return {
    journeys: [
      {
        id: JOURNEY,
        name: 'Hello from JavaScript',
        trigger: 'js.hello',
        triggerWhere: undefined,
        exitOn: [],
        entryLimit: { tag: 'unlimited' },
        enabled: true,
        suppress: 0n,
      },
    ],
    templates: [
      {
        key: 'js-hello',
        subject: 'Hello from JavaScript, {{ name | default(key) }}',
        body: 'This email was queued by a journey written in JavaScript at {{ sent_at }}.\n',
        html: undefined,
      },
    ],
    buckets: [],
  };
}

export function run(invocation) {
  if (invocation.handler !== JOURNEY) {
    throw `unknown handler "${invocation.handler}": this module's journeys are "${JOURNEY}"`;
  }
  const startedAt = now(); // BigInt, journaled
  let emailId;
  try {
    emailId = sendEmail({
      template: 'js-hello',
      to: undefined,
      varsJson: JSON.stringify({ sent_at: startedAt.toString() }),
    });
  } catch (e) {
    throw `sending email with template \`js-hello\` failed: ${e?.payload ?? e}`;
  }
  log('info', `js-hello sent ${emailId} to ${invocation.person.key} (run ${invocation.runId})`);
}
