-- Step 3 — facts about addresses.

-- Each live contact's best email (R6 add_to_mailchimp and no_usable_email, flag email_differs):
-- its best address not on hold: bulk-mail first, then primary, then the lowest email id.
CREATE OR REPLACE TEMP TABLE c_best AS
SELECT e.contact_id, e.email AS best_email, e.norm AS best_norm
FROM c_email e
JOIN c_state s USING (contact_id)
WHERE e.on_hold = 0
QUALIFY row_number() OVER (
    PARTITION BY e.contact_id
    ORDER BY e.is_bulkmail DESC, e.is_primary DESC, e.email_id) = 1;

-- Each live contact's address to name them by when no address is usable (the report, `outcomes`
-- and the plan show it, so a contact whose only address is on hold can still be found): the
-- same order, on hold or not. It never decides anything.
CREATE OR REPLACE TEMP TABLE c_shown AS
SELECT e.contact_id, e.email AS shown_email
FROM c_email e
JOIN c_state s USING (contact_id)
QUALIFY row_number() OVER (
    PARTITION BY e.contact_id
    ORDER BY e.on_hold = 0 DESC, e.is_bulkmail DESC, e.is_primary DESC, e.email_id) = 1;

-- Per address: on hold anywhere in CiviCRM — any email row with the address, of any contact,
-- trashed ones included (R7 email_on_hold) — and whether a trashed contact owns it (flag
-- contact_deleted). Only addresses with either fact are kept.
CREATE OR REPLACE TEMP TABLE c_addr AS
SELECT e.norm, bool_or(e.on_hold <> 0) AS on_hold, bool_or(c.is_deleted) AS trashed
FROM c_email e JOIN c_contact c USING (contact_id)
WHERE e.on_hold <> 0 OR c.is_deleted
GROUP BY e.norm;

-- The live owners of each address (matching rule; flag duplicate_contacts). One contact holding
-- the same address twice is one owner.
CREATE OR REPLACE TEMP TABLE c_owner AS
SELECT DISTINCT e.norm, e.contact_id
FROM c_email e JOIN c_state s USING (contact_id);
