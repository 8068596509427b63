// A typed client of Kring's HTTP API: `openapi-fetch` over the types that `openapi-typescript`
// generates from the server's `GET /openapi.json` into `schema.d.ts` (`npm run generate`).
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths };
export type Schemas = components["schemas"];
export type Problem = Schemas["Problem"];

/** A client that calls the API at `baseUrl` as the holder of `token` (none: anonymous). */
export function kring(baseUrl: string, token?: string) {
  return createClient<paths>({
    baseUrl,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
}

export type Kring = ReturnType<typeof kring>;

/** What an openapi-fetch call answers. */
interface Answer<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The answer's body when its status is `status`; otherwise throws with the problem it got. */
export function expectStatus<T>(what: string, answer: Answer<T>, status = 200): T {
  const { data, error, response } = answer;
  if (response.status !== status || data === undefined) {
    throw new Error(
      `${what}: expected ${status}, got ${response.status} ${JSON.stringify(error ?? data)}`,
    );
  }
  return data;
}

/** The problem of a refused call when its status is `status`; otherwise throws. */
export function expectProblem(what: string, answer: Answer<unknown>, status: number): Problem {
  const { error, response } = answer;
  const problem = error as Partial<Problem> | undefined;
  if (response.status !== status || typeof problem?.code !== "string") {
    throw new Error(
      `${what}: expected a ${status} problem, got ${response.status} ${JSON.stringify(error)}`,
    );
  }
  return problem as Problem;
}
