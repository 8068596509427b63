// End to end through the generated client, against `kring-api serve --demo`:
//
//   KRING_URL=http://127.0.0.1:8080 KRING_DEMO=../../kring-data/demo.json npm run demo
//
// A teacher reads who may see the demo's class photo (Sanne's parents are withheld: Daan's second
// parent withdrew group_communication); Sanne's parent reads the feed without it; Daan's parent
// grants consent (retried with the same Idempotency-Key, it writes nothing again) and Sanne's
// parent, reading with `min_position`, sees the photo at once; the parent withdraws again and the
// photo is gone; the compliance officer reads both decisions in the consent history. Any type
// error fails `tsc --noEmit`; any unexpected status throws here (exit code 1).
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { expectProblem, expectStatus, kring, type Schemas } from "./client.js";

/** The part of `DIR/demo.json` used here. */
interface Demo {
  children: { child_id: string; first_name: string; guardians: string[] }[];
  people: Record<string, { person_id: string; token: string }>;
  posts: { post_id: string; group_id: string; media: string[] }[];
}

function required<T>(what: string, value: T | undefined): T {
  if (value === undefined) throw new Error(`demo.json has no ${what}`);
  return value;
}

function check(condition: boolean, what: string, detail?: unknown): void {
  if (!condition) throw new Error(`${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
  console.log(`ok: ${what}`);
}

const base = required("KRING_URL", process.env.KRING_URL);
const demo = JSON.parse(readFileSync(required("KRING_DEMO", process.env.KRING_DEMO), "utf8")) as Demo;
const as = (label: string) => kring(base, required(`people.${label}`, demo.people[label]).token);

const teacher = as("teacher_groep_3");
const sanneParent = as("parent_sanne_1");
const daanParent = as("parent_daan_2");
const officer = as("compliance_officer");
const sanneParentId = required("people.parent_sanne_1", demo.people.parent_sanne_1).person_id;
const classPost = required("posts[0]", demo.posts[0]);
const photo = required("posts[0].media[1]", classPost.media[1]); // shows Sanne and Daan
const daan = required("children[1]", demo.children[1]).child_id;
const purpose = "group_communication";

// The teacher reads the class photo's viewers: Sanne's parent is withheld because of Daan.
const viewers: Schemas["ViewersDoc"] = expectStatus(
  "GET viewers",
  await teacher.GET("/v1/media/{media_id}/viewers", { params: { path: { media_id: photo } } }),
);
const withheld = viewers.withheld.find((w) => w.person_id === sanneParentId);
check(
  withheld?.because.some((b) => b.child_id === daan && b.purpose === purpose) === true,
  "the teacher sees Sanne's parent withheld from the photo because of Daan's consent",
  viewers.withheld,
);
check(viewers.viewers.some((v) => v.reason === "staff"), "staff may see the photo", viewers.viewers);

// To the withheld parent the photo does not exist: a typed problem, not a crash.
const refused = expectProblem(
  "GET viewers as a withheld parent",
  await sanneParent.GET("/v1/media/{media_id}/viewers", { params: { path: { media_id: photo } } }),
  404,
);
check(refused.code === "not_found", "the withheld parent asking for the photo's viewers gets 404", refused);

/** Whether the photo is in the class post of Sanne's parent's feed, read at `position`. */
async function photoInFeed(position: number): Promise<boolean> {
  const feed = expectStatus(
    "GET /v1/feed",
    await sanneParent.GET("/v1/feed", {
      params: { query: { min_position: position, group_id: classPost.group_id, limit: 100 } },
    }),
  );
  const post = feed.posts.find((p) => p.post_id === classPost.post_id);
  if (post === undefined) throw new Error(`the class post is not in the feed: ${JSON.stringify(feed)}`);
  return post.media.some((m) => m.media_id === photo);
}

check(!(await photoInFeed(0)), "the photo is not in Sanne's parent's feed");

/** Daan's second parent decides on group_communication, with `key` as its Idempotency-Key. */
async function decide(granted: boolean, key: string): Promise<Schemas["Decided"]> {
  return expectStatus(
    `PUT consent ${granted ? "granted" : "withdrawn"}`,
    await daanParent.PUT("/v1/children/{child_id}/consents/{purpose}", {
      params: { path: { child_id: daan, purpose }, header: { "Idempotency-Key": key } },
      body: { granted, method: "app" },
    }),
  );
}

const grantKey = randomUUID();
const granted = await decide(true, grantKey);
check(granted.effective, "Daan's parent grants group_communication: consent holds", granted);
const retried = await decide(true, grantKey);
check(retried.position === granted.position, "the grant retried with its Idempotency-Key writes nothing again", retried);
check(await photoInFeed(granted.position), "read at the grant's position, the photo is in the feed");

const withdrawn = await decide(false, randomUUID());
check(!withdrawn.effective, "Daan's parent withdraws it again: consent no longer holds", withdrawn);
check(withdrawn.position > granted.position, "the withdrawal comes after the grant in the log");
check(!(await photoInFeed(withdrawn.position)), "read at the withdrawal's position, the photo is gone");

// The compliance officer reads the audit trail of Daan's group_communication consent.
const history = expectStatus(
  "GET consent history",
  await officer.GET("/v1/children/{child_id}/consents/history", {
    params: {
      path: { child_id: daan },
      query: { purpose, min_position: withdrawn.position },
    },
  }),
);
const daanParentId = required("people.parent_daan_2", demo.people.parent_daan_2).person_id;
const recent = history.entries.filter((e) => e.position >= granted.position);
check(
  recent.length === 2 &&
    recent.every((e) => e.purpose === purpose && e.guardian_id === daanParentId && e.method === "app") &&
    recent[0]?.granted === true &&
    recent[1]?.granted === false &&
    recent[1]?.effective_after === false,
  "the compliance officer reads the grant and the withdrawal in the consent history",
  history.entries,
);
check(
  history.entries.every((e) => e.purpose === purpose),
  "the history is filtered by purpose in the query",
);

console.log("demo: every step answered as expected");
