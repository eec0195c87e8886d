/**
 * A module's manifest as plain JSON — what its `describe` export tells the host — in the shape
 * the Rust SDK's `testing::describe` gives: camelCase fields, durations in ms, `null` for what
 * is absent, conditions as parsed JSON.
 */
import type { Json } from '../criteria.js';
import type { EntryLimit, Module } from '../module.js';
import type { EntryLimitJson, ManifestJson } from './types.js';

function limit(l: EntryLimit): EntryLimitJson {
  return l === 'once' || l === 'unlimited' ? l : { oncePer: l.oncePer };
}

function condition(text: string | undefined): Json | null {
  return text === undefined ? null : (JSON.parse(text) as Json);
}

/**
 * The manifest `module` declares, as JSON, to check its declarations in a test:
 *
 * ```ts
 * const manifest = describeModule(module);
 * assert.deepEqual(manifest.buckets[0]?.criteria, {
 *   type: 'event', event: 'project.created', check: 'count', operator: 'gte', value: 3, withinMs: days(30),
 * });
 * ```
 */
export function describeModule(module: Module): ManifestJson {
  const m = module.manifest;
  return {
    journeys: m.journeys.map((j) => ({
      id: j.id,
      name: j.name,
      trigger: j.trigger,
      triggerWhere: condition(j.triggerWhere),
      exitOn: j.exitOn.map((r) => ({ event: r.event, where: condition(r.where) })),
      entryLimit: limit(j.entryLimit),
      enabled: j.enabled,
      suppressMs: j.suppress,
    })),
    templates: m.templates.map((t) => ({ key: t.key, subject: t.subject, body: t.body, html: t.html ?? null })),
    buckets: m.buckets.map((b) => ({
      id: b.id,
      name: b.name,
      description: b.description ?? null,
      enabled: b.enabled,
      kind: b.kind,
      criteria: condition(b.criteria),
      timeBased: b.timeBased ?? null,
      fastExpiry: b.fastExpiry,
      minDwellMs: b.minDwellMs ?? null,
      maxDwellMs: b.maxDwellMs ?? null,
      entryLimit: limit(b.entryLimit),
      reactions: b.reactions.map((r) => ({
        journeyId: r.journeyId,
        handler: r.handler,
        on:
          'enter' in r.on
            ? { enter: { firstEntryOnly: r.on.enter.firstEntryOnly } }
            : 'leave' in r.on
              ? { leave: { reasons: r.on.leave.reasons === undefined ? null : [...r.on.leave.reasons] } }
              : { dwell: { afterMs: r.on.dwell.afterMs ?? null, everyMs: r.on.dwell.everyMs ?? null } },
      })),
    })),
  };
}
