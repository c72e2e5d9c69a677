-- Step 9 — the outcome rows (DESIGN "Outcome rows"): one per person, each with a reason a person
-- can read without the rules table — which date decided (who wins, for R1–R10) and what happens,
-- or why nothing can (the cannot_sync codes of R2, R3, R6, R7, R8, R9, a member record that
-- cannot be read safely; policy honor_civicrm_consent).
-- When both dates fall on the same day, the time is shown too, so a decision to the second reads.
-- person_id comes from step 5. Date evidence (step 6): a row a profile edit decided names all
-- three dates (Mailchimp's last change, its last change of status, CiviCRM's) and what decides;
-- a row whose evidence is missing says so.
CREATE OR REPLACE TEMP VIEW worded AS
WITH d AS (
    SELECT f.*,
        coalesce(civicrm_changed::DATE = mailchimp_changed::DATE, false) AS same_day,
        coalesce(civicrm_changed::DATE = mailchimp_status_changed::DATE, false) AS s_same_day
    FROM flagged f
)
SELECT d.*,
    CASE WHEN same_day OR s_same_day THEN strftime(civicrm_changed, '%-d %b %Y %H:%M:%S UTC')
         ELSE strftime(civicrm_changed, '%-d %b %Y') END AS cdate,
    CASE WHEN s_same_day THEN strftime(mailchimp_status_changed, '%-d %b %Y %H:%M:%S UTC')
         ELSE strftime(mailchimp_status_changed, '%-d %b %Y') END AS sdate,
    CASE WHEN mailchimp_status_event = 'unsub' THEN 'unsubscribed' ELSE 'subscribed' END
        AS sverb,
    CASE WHEN same_day THEN strftime(mailchimp_changed, '%-d %b %Y %H:%M:%S UTC')
         ELSE strftime(mailchimp_changed, '%-d %b %Y') END AS mdate,
    CASE history_status
        WHEN 'Added' THEN 'added them' WHEN 'Removed' THEN 'removed them'
        WHEN 'Pending' THEN 'marked them pending' WHEN 'Deleted' THEN 'deleted their membership'
        ELSE concat('recorded "', history_status, '"')
    END AS hverb,
    CASE mailchimp_status
        WHEN 'pending' THEN 'marked pending' WHEN 'transactional' THEN 'marked transactional'
        ELSE mailchimp_status
    END AS mverb,
    CASE lower(gc_status)
        WHEN 'added' THEN 'in the group' WHEN 'removed' THEN 'removed from the group'
        WHEN 'pending' THEN 'pending in the group' ELSE coalesce(lower(gc_status), 'unknown')
    END AS gc_words
FROM d;

-- (concat() rather than ||: one allocation per sentence, which matters at a million rows.)
CREATE OR REPLACE TEMP VIEW reasoned AS
SELECT w.*,
    CASE
        WHEN NOT has_member AND history_undated
            THEN concat('Not in the Mailchimp audience, and CiviCRM lists them as ',
                        CASE WHEN gc_status IS NULL THEN 'not in the group' ELSE gc_words END,
                        ' with no usable date in their subscription history')
        WHEN NOT has_member AND has_history
            THEN concat('Not in the Mailchimp audience, and CiviCRM ', hverb, ' on ', cdate)
        WHEN NOT has_member
            THEN concat('Not in the Mailchimp audience, and CiviCRM lists them as ', gc_words,
                        ' with no subscription history')
        WHEN contact_id IS NULL
            THEN concat('Mailchimp ', mverb, CASE WHEN mdate IS NOT NULL THEN ' on ' END, mdate,
                        CASE WHEN contact_deleted
                             THEN ', and the only CiviCRM contact with this address is in the trash'
                             ELSE ', and no CiviCRM contact has this address' END)
        WHEN history_undated
            THEN concat('Mailchimp ', mverb, CASE WHEN mdate IS NOT NULL THEN ' on ' END, mdate,
                        ', and CiviCRM''s subscription history for them has no usable date',
                        CASE WHEN reason_code = 'no_history_date'
                             THEN ', so nobody knows which side changed later'
                             ELSE ', so Mailchimp decides' END)
        WHEN NOT has_history
            THEN concat('Mailchimp ', mverb, CASE WHEN mdate IS NOT NULL THEN ' on ' END, mdate,
                        ', and CiviCRM has no subscription history for them in this group, so ',
                        'Mailchimp decides')
        WHEN mailchimp_changed IS NULL
            THEN concat('CiviCRM ', hverb, ' on ', cdate,
                        ', and Mailchimp has no change date')
        WHEN profile_edit_decided
            THEN concat('Mailchimp''s last change on ', mdate, ' was not a change of status: ',
                        'they ', sverb, ' on ', sdate,
                        CASE WHEN date_trunc('second', mailchimp_status_changed)
                                  = date_trunc('second', civicrm_changed)
                             THEN ', the same second as CiviCRM ' ELSE ', before CiviCRM ' END,
                        hverb, ' on ', cdate,
                        CASE WHEN winner = 'civicrm'
                                 THEN ', so CiviCRM decides (policy date_basis = "status_change")'
                             WHEN getvariable('date_basis') = 'status_change'
                                 THEN ', and a tie goes to Mailchimp (policy tie_winner)'
                             ELSE ', yet Mailchimp''s later last change decides, as in the sync'
                        END)
        WHEN status_change_unknown
            THEN concat('Mailchimp ', mverb, ' on ', mdate, ', after CiviCRM ', hverb, ' on ',
                        cdate, ', but whether that was a change of status is unknown: ',
                        CASE WHEN evidence_state = 'unreadable'
                             THEN 'Mailchimp''s activity feed could not be read'
                             ELSE 'Mailchimp''s activity feed was not read for these snapshots '
                                  '(take both snapshots together)' END)
        WHEN tie
            THEN concat('CiviCRM ', hverb, ' on ', cdate, ', the same second as Mailchimp''s ',
                        'last change (', mailchimp_status, '), and a tie goes to ',
                        CASE winner WHEN 'civicrm' THEN 'CiviCRM'
                                    ELSE 'Mailchimp (policy tie_winner)' END)
        WHEN winner = 'civicrm'
            THEN concat('CiviCRM ', hverb, ' on ', cdate, ', after Mailchimp ', mverb, ' on ',
                        mdate)
        ELSE concat('Mailchimp ', mverb, ' on ', mdate, ', after CiviCRM ', hverb, ' on ', cdate)
    END AS why,
    CASE
        WHEN consent_applied AND outcome = 'unsubscribe_in_mailchimp'
            THEN concat('unsubscribe in Mailchimp, because CiviCRM says ', consent_words,
                        ' (policy honor_civicrm_consent)')
        WHEN consent_applied
            THEN concat('leave them out of Mailchimp, because CiviCRM says ', consent_words,
                        ' (policy honor_civicrm_consent)')
        WHEN reason_code = 'no_member_id'
            THEN 'nothing can be done, because Mailchimp sent this member without an id'
        WHEN reason_code = 'no_member_email'
            THEN 'nothing can be done, because Mailchimp sent this member without an email address'
        WHEN reason_code = 'unknown_member_status'
            THEN concat('nothing can be done, because Mailchimp gave the member the status "',
                        coalesce(mailchimp_status, '(none)'), '", which the rules do not know')
        WHEN reason_code = 'no_member_change_date'
            THEN 'nothing can be done, because Mailchimp sent no readable date of the '
                 'member''s last change, so nobody knows which side changed later'
        WHEN reason_code = 'other_email_subscribed' AND rule = 'R9'
            THEN concat('cannot unsubscribe them in Mailchimp while their other address ',
                        latest_in_email, ' is subscribed at Mailchimp and changed there after ',
                        'CiviCRM, which puts the contact back in the CiviCRM group')
        WHEN reason_code = 'other_email_subscribed'
            THEN concat('cannot remove them from the CiviCRM group while their other address ',
                        other_in_email, ' is subscribed at Mailchimp')
        WHEN reason_code = 'no_history_date' AND rule = 'R2'
            THEN 'cannot remove them from the CiviCRM group without knowing when CiviCRM last '
                 'changed them (fix the date of their subscription history in CiviCRM)'
        WHEN reason_code = 'no_history_date'
            THEN 'cannot add them to the CiviCRM group without knowing when CiviCRM last '
                 'changed them (fix the date of their subscription history in CiviCRM)'
        WHEN reason_code = 'no_usable_email'
            THEN 'cannot add them to Mailchimp, because they have no email address that is not '
                 'on hold'
        WHEN reason_code = 'email_shared_with_other_contact' AND best_email_added_for_other
            THEN concat('cannot add them to Mailchimp, because their address ', best_email,
                        ' is also the best address of contact ', shared_with, ', who is added ',
                        'instead (one address is one Mailchimp member)')
        WHEN reason_code = 'email_shared_with_other_contact'
            THEN concat('cannot add them to Mailchimp, because their address ', best_email,
                        ' is already the Mailchimp member of contact ', shared_with)
        WHEN reason_code = 'email_on_hold'
            THEN 'cannot resubscribe them in Mailchimp, because the address is on hold in CiviCRM'
        WHEN reason_code = 'cleaned_at_mailchimp'
            THEN 'cannot resubscribe them in Mailchimp, because Mailchimp cleaned the address '
                 '(it bounced) and will not take it back'
        WHEN rule IN ('R1', 'R5') THEN 'subscribed on both sides, nothing to do'
        WHEN rule IN ('R4', 'R10') AND has_member AND contact_id IS NOT NULL
            THEN 'not subscribed on either side, nothing to do'
        WHEN rule IN ('R4', 'R10') THEN 'nothing to do'
        WHEN rule = 'R2' THEN 'remove from the CiviCRM group'
        WHEN rule = 'R3' AND contact_id IS NULL
            THEN 'create a CiviCRM contact and add it to the group'
        WHEN rule = 'R3' THEN 'add to the CiviCRM group'
        WHEN rule = 'R6' THEN concat('subscribe ', best_email, ' in Mailchimp')
        WHEN rule = 'R7' AND needs_confirmation
            THEN 'resubscribe in Mailchimp as pending, because they unsubscribed themselves '
                 '(Mailchimp emails them to confirm)'
        WHEN rule = 'R7' THEN 'resubscribe in Mailchimp'
        WHEN rule = 'R9' THEN 'unsubscribe in Mailchimp'
    END AS action
FROM worded w;

INSERT INTO outcomes
SELECT getvariable('reconciliation_id') AS reconciliation_id,
       person_id,
       coalesce(email_address, best_email, shown_email) AS email,
       contact_id,
       CASE WHEN reason_code = 'no_member_id' THEN NULL ELSE member_id END AS member_id,
       coalesce(display_name, mc_name) AS display_name,
       mailchimp_status,
       mailchimp_changed,
       coalesce(gc_status, CASE WHEN history_status = 'Deleted' THEN 'Deleted' END)
           AS civicrm_status,
       civicrm_changed,
       history_status AS civicrm_history_status,
       winner,
       outcome,
       rule,
       coalesce(reason_code, '') AS reason_code,
       concat(why, ': ', action, '.') AS reason,
       flags,
       CASE WHEN outcome = 'add_to_mailchimp' THEN best_email ELSE email_address END
           AS target_email,
       mailchimp_status_changed
FROM reasoned
LEFT JOIN c_shown USING (contact_id)
-- A member with no CiviCRM contact is named by Mailchimp's FNAME and LNAME (only those rows
-- read the merge fields' JSON; they are step 5's rows without a contact, read from p_rows so
-- that the view chain above is not evaluated a second time for them).
LEFT JOIN (
    SELECT id AS member_id,
           nullif(trim(concat_ws(' ', json_extract_string(merge_fields, '$.FNAME'),
                                 json_extract_string(merge_fields, '$.LNAME'))), '') AS mc_name
    FROM mailchimp_member
    WHERE snapshot_id = getvariable('mailchimp_snapshot') AND merge_fields IS NOT NULL
      AND id IN (SELECT member_id FROM p_rows WHERE contact_id IS NULL)
) USING (member_id);
