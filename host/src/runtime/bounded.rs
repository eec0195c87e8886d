//! The imports whose arguments are strings, defined again over the generated ones so that
//! each string is measured where it lies in the guest's memory, and refused past
//! [`MAX_IMPORT_PAYLOAD`], before it is copied into the host. (The generated bindings lift
//! every string into a `String` first: a guest passing a 100 MB argument made the host copy
//! 100 MB to refuse it.) Past the check each definition hands the owned arguments to the
//! generated `Host` implementation in [`super::host`], which does the work.

use super::bindings::ContextHost;
use super::bindings::types::{Email, LogLevel, MemberPageRequest};
use super::host::{ActivationState, check_payload};
use wasmtime::component::{ComponentType, Lift, Linker, WasmStr};
use wasmtime::{AsContext, StoreContextMut};

/// The context interface, as the world imports it.
const CONTEXT: &str = "waymark:journey/context@0.1.0";

/// `send-email`'s record, its strings still in guest memory.
#[derive(ComponentType, Lift)]
#[component(record)]
struct EmailArgs {
    template: WasmStr,
    to: Option<WasmStr>,
    #[component(name = "vars-json")]
    vars_json: WasmStr,
}

/// `bucket-members`' page request, its cursor still in guest memory.
#[derive(ComponentType, Lift)]
#[component(record)]
struct PageArgs {
    limit: Option<u32>,
    cursor: Option<WasmStr>,
}

/// The string, measured in place and copied only within the cap.
fn owned(
    store: impl AsContext<Data = ActivationState>,
    what: &str,
    text: &WasmStr,
) -> wasmtime::Result<String> {
    let text = text.to_str(&store)?;
    check_payload(what, &text)?;
    Ok(text.into_owned())
}

fn owned_opt(
    store: impl AsContext<Data = ActivationState>,
    what: &str,
    text: &Option<WasmStr>,
) -> wasmtime::Result<Option<String>> {
    text.as_ref()
        .map(|text| owned(store, what, text))
        .transpose()
}

type Store<'a> = StoreContextMut<'a, ActivationState>;

/// Define the string-taking imports of the context interface over the generated ones.
pub fn add_to_linker(linker: &mut Linker<ActivationState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut context = linker.instance(CONTEXT)?;

    context.func_wrap(
        "sleep",
        |mut store: Store, (duration, label): (u64, Option<WasmStr>)| {
            let label = owned_opt(&store, "the sleep label", &label)?;
            store.data_mut().sleep(duration, label)
        },
    )?;
    context.func_wrap(
        "sleep-until",
        |mut store: Store, (at, label): (i64, Option<WasmStr>)| {
            let label = owned_opt(&store, "the sleep label", &label)?;
            store.data_mut().sleep_until(at, label)
        },
    )?;
    context.func_wrap(
        "trigger",
        |mut store: Store, (name, key, properties): (WasmStr, Option<WasmStr>, WasmStr)| {
            let name = owned(&store, "the event name", &name)?;
            let key = owned_opt(&store, "the person key", &key)?;
            let properties = owned(&store, "the event's properties", &properties)?;
            Ok((store.data_mut().trigger(name, key, properties)?,))
        },
    )?;
    context.func_wrap(
        "update-contact",
        |mut store: Store, (properties,): (WasmStr,)| {
            let properties = owned(&store, "the contact properties", &properties)?;
            Ok((store.data_mut().update_contact(properties)?,))
        },
    )?;
    context.func_wrap("checkpoint", |mut store: Store, (label,): (WasmStr,)| {
        let label = owned(&store, "the checkpoint label", &label)?;
        store.data_mut().checkpoint(label)
    })?;
    context.func_wrap(
        "log",
        |mut store: Store, (level, message): (LogLevel, WasmStr)| {
            // A log line is cut, not refused: take no more than the cap of it.
            let message = message.to_str(&store)?;
            let cut = &message[..floor_char_boundary(&message, super::host::MAX_IMPORT_PAYLOAD)];
            let message = cut.to_owned();
            store.data_mut().log(level, message)
        },
    )?;

    context.func_wrap_async(
        "wait-for-event",
        |mut store: Store,
         (name, filter, timeout, label): (WasmStr, Option<WasmStr>, u64, Option<WasmStr>)| {
            Box::new(async move {
                let name = owned(&store, "the event name", &name)?;
                let filter = owned_opt(&store, "the wait's where-json", &filter)?;
                let label = owned_opt(&store, "the wait label", &label)?;
                Ok((store
                    .data_mut()
                    .wait_for_event(name, filter, timeout, label)
                    .await?,))
            })
        },
    )?;
    context.func_wrap_async(
        "history-event-count",
        |mut store: Store, (key, name, within): (Option<WasmStr>, WasmStr, Option<u64>)| {
            Box::new(async move {
                let key = owned_opt(&store, "the person key", &key)?;
                let name = owned(&store, "the event name", &name)?;
                Ok((store
                    .data_mut()
                    .history_event_count(key, name, within)
                    .await?,))
            })
        },
    )?;
    context.func_wrap_async(
        "history-event-count-since",
        |mut store: Store, (key, name, since): (Option<WasmStr>, WasmStr, Option<i64>)| {
            Box::new(async move {
                let key = owned_opt(&store, "the person key", &key)?;
                let name = owned(&store, "the event name", &name)?;
                Ok((store
                    .data_mut()
                    .history_event_count_since(key, name, since)
                    .await?,))
            })
        },
    )?;
    context.func_wrap_async(
        "history-journey",
        |mut store: Store, (key, journey): (Option<WasmStr>, WasmStr)| {
            Box::new(async move {
                let key = owned_opt(&store, "the person key", &key)?;
                let journey = owned(&store, "the journey id", &journey)?;
                Ok((store.data_mut().history_journey(key, journey).await?,))
            })
        },
    )?;
    context.func_wrap_async(
        "history-email",
        |mut store: Store, (to, template): (Option<WasmStr>, WasmStr)| {
            Box::new(async move {
                let to = owned_opt(&store, "the address", &to)?;
                let template = owned(&store, "the template key", &template)?;
                Ok((store.data_mut().history_email(to, template).await?,))
            })
        },
    )?;
    context.func_wrap_async("send-email", |mut store: Store, (email,): (EmailArgs,)| {
        Box::new(async move {
            let email = Email {
                template: owned(&store, "the template key", &email.template)?,
                to: owned_opt(&store, "the recipient address", &email.to)?,
                vars_json: owned(&store, "the email's vars", &email.vars_json)?,
            };
            Ok((store.data_mut().send_email(email).await?,))
        })
    })?;
    context.func_wrap_async("bucket-count", |mut store: Store, (bucket,): (WasmStr,)| {
        Box::new(async move {
            let bucket = owned(&store, "the bucket id", &bucket)?;
            Ok((store.data_mut().bucket_count(bucket).await?,))
        })
    })?;
    context.func_wrap_async(
        "bucket-has",
        |mut store: Store, (bucket, key): (WasmStr, WasmStr)| {
            Box::new(async move {
                let bucket = owned(&store, "the bucket id", &bucket)?;
                let key = owned(&store, "the person key", &key)?;
                Ok((store.data_mut().bucket_has(bucket, key).await?,))
            })
        },
    )?;
    context.func_wrap_async(
        "bucket-members",
        |mut store: Store, (bucket, page): (WasmStr, PageArgs)| {
            Box::new(async move {
                let bucket = owned(&store, "the bucket id", &bucket)?;
                let page = MemberPageRequest {
                    limit: page.limit,
                    cursor: owned_opt(&store, "the cursor", &page.cursor)?,
                };
                Ok((store.data_mut().bucket_members(bucket, page).await?,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The largest index at most `max` that falls on a character boundary of `text`.
fn floor_char_boundary(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}
