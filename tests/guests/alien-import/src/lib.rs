//! Test guest: a component of the journey world that also imports `test:alien/gadget`, which
//! no Waymark host provides. A deploy must refuse it, naming the import, before running any
//! of it.

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "test:alien/alien",
    generate_all,
});

struct Alien;

impl Guest for Alien {
    fn describe() -> Manifest {
        // Uses the import, so the component keeps it.
        let pokes = test::alien::gadget::poke();
        assert!(pokes < u32::MAX);
        Manifest {
            journeys: vec![],
            templates: vec![],
            buckets: vec![],
        }
    }

    fn run(_: Invocation) -> Result<(), String> {
        Ok(())
    }
}

export!(Alien);
