/**
 * Strict validation of OCPP 1.6J calls and answers, for ocpp-rpc's strict mode
 * (`strictModeValidators`), with the validators precompiled from its own OCPP 1.6 schemas
 * (generated/ocpp16-validators.ts, see ocpp-validators.build.ts). What a wallbox sends is checked
 * exactly as ocpp-rpc's built-in validator checks it, and refused with the same CallError code
 * (the first error's keyword decides, by ocpp-rpc's table), but ajv is not loaded on the device.
 */
import { createRPCError } from 'ocpp-rpc';
import type { Validator } from 'ocpp-rpc/lib/validator.js';
import * as compiled from './generated/ocpp16-validators.js';

interface SchemaError {
  keyword: string;
  instancePath: string;
  message?: string;
}
type CompiledValidator = ((data: unknown) => boolean) & { errors?: SchemaError[] | null };

/** The CallError code for the first failed keyword (ocpp-rpc lib/validator.js, as it ships). */
export const ERROR_CODE_BY_KEYWORD: Record<string, string> = {
  maximum: 'FormatViolation',
  minimum: 'FormatViolation',
  maxLength: 'FormatViolation',
  minLength: 'FormatViolation',
  exclusiveMaximum: 'OccurenceConstraintViolation',
  exclusiveMinimum: 'OccurenceConstraintViolation',
  multipleOf: 'OccurenceConstraintViolation',
  maxItems: 'OccurenceConstraintViolation',
  minItems: 'OccurenceConstraintViolation',
  maxProperties: 'OccurenceConstraintViolation',
  minProperties: 'OccurenceConstraintViolation',
  additionalItems: 'OccurenceConstraintViolation',
  required: 'OccurenceConstraintViolation',
  pattern: 'PropertyConstraintViolation',
  propertyNames: 'PropertyConstraintViolation',
  additionalProperties: 'PropertyConstraintViolation',
  type: 'TypeConstraintViolation',
};

/** `urn:BootNotification.req` → `BootNotification_req`: the generated module's export for a schema. */
const exportName = (schemaId: string): string => schemaId.replace(/^urn:/, '').replace('.', '_');

const validators = compiled as unknown as Record<string, CompiledValidator | undefined>;

/** ajv's errorsText: "data/idTag must NOT have more than 20 characters, …". */
const errorsText = (errors: SchemaError[]) =>
  errors.map((e) => `data${e.instancePath} ${e.message}`).join(', ');

/** The validator ocpp-rpc's strict mode calls for subprotocol ocpp1.6. */
const validator = {
  subprotocol: 'ocpp1.6',
  /** Throws the RPC error ocpp-rpc answers with (or closes on) when `params` breaks the schema. */
  validate(schemaId: string, params: unknown): boolean {
    const validate = validators[exportName(schemaId)];
    if (!validate)
      throw createRPCError(
        'ProtocolError',
        `Schema '${schemaId}' is missing from subprotocol schema 'ocpp1.6'`,
      );
    const ok = validate(params);
    const errors = validate.errors;
    if (!ok && errors && errors.length > 0) {
      const code = ERROR_CODE_BY_KEYWORD[errors[0]?.keyword ?? ''] ?? 'FormatViolation';
      throw createRPCError(code, errorsText(errors), { errors, data: params });
    }
    return ok;
  },
};

/**
 * As ocpp-rpc's options type it: its typings name its ajv-backed class, whose private fields the
 * server never touches (it calls `subprotocol` and `validate`, lib/server.js and lib/client.js).
 */
export const ocpp16Validator = validator as unknown as Validator;
